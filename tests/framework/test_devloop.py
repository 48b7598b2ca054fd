"""The plugin development loop: editing a plugin's source reruns what uses it; `--rerun` forces stages."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest
import toy_plugin

from histo.cli import main
from histo.errors import RecipeError
from histo.manager import Plugins
from histo.recipe import load_recipe
from histo.run import run_recipe

RECIPE = """\
name: numbers
stages:
  write:
    stage: write_numbers
    params: {count: 4}
  total:
    stage: sum_numbers
    params: {numbers: write, keep: {name: dev_topk, params: {k: 3}}}
"""

DEV_PLUGIN = '''\
from pydantic import BaseModel, ConfigDict
from histo import ComponentSpec, hookimpl

SCALE = 1


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    k: int = 2


class DevTopK:
    def __init__(self, config: Config) -> None:
        self.k = config.k

    def __call__(self, values: list[float]) -> list[float]:
        return [SCALE * v for v in sorted(values, reverse=True)[: self.k]]


@hookimpl
def histo_token_aggregators():
    return [ComponentSpec("dev_topk", DevTopK, Config, "top-k, under development")]
'''


@pytest.fixture
def dev_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, histo_plugins: Plugins) -> Path:
    """A plugin package on sys.path, not installed from an index: its source is part of cache keys."""
    package = tmp_path / "src" / "histo_dev_topk"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(DEV_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    importlib.invalidate_caches()
    module = importlib.import_module("histo_dev_topk")
    histo_plugins.register(toy_plugin, "toy", package="histo-toy-test")
    histo_plugins.register(module, "dev", package="histo-dev-topk-test", version="0.1.0")
    toy_plugin.CALLS.clear()
    yield package
    sys.modules.pop("histo_dev_topk", None)


def run(tmp_path: Path, plugins: Plugins, rerun: list[str] | None = None) -> Any:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE)
    loaded = load_recipe(recipe, plugins=plugins)
    return run_recipe(loaded, tmp_path / "run", plugins=plugins, quiet=True, rerun=rerun or [])


def statuses(result: Any) -> list[str]:
    return [s["status"] for s in result.summary["stages"]]


def test_editing_a_plugin_source_reruns_the_stages_using_it(
    dev_plugin: Path, tmp_path: Path, histo_plugins: Plugins
) -> None:
    assert statuses(run(tmp_path, histo_plugins)) == ["done", "done"]
    assert statuses(run(tmp_path, histo_plugins)) == ["cached", "cached"]
    source = dev_plugin / "__init__.py"
    source.write_text(source.read_text().replace("SCALE = 1", "SCALE = 2"))
    # same version, new code: only the stage using the component reruns
    assert statuses(run(tmp_path, histo_plugins)) == ["cached", "done"]
    (dev_plugin / "helpers.py").write_text("X = 1\n")  # any .py file of the package counts
    assert statuses(run(tmp_path, histo_plugins)) == ["cached", "done"]
    (dev_plugin / "notes.txt").write_text("not code")
    assert statuses(run(tmp_path, histo_plugins)) == ["cached", "cached"]


def test_editing_a_stage_plugin_reruns_it_and_its_readers(
    dev_plugin: Path, tmp_path: Path, histo_plugins: Plugins, monkeypatch: pytest.MonkeyPatch
) -> None:
    import histo.sources as sources

    toy_version = {"code": "v1"}  # stands for the content of toy_plugin.py, which the test must not edit
    real = sources.tree_digest
    monkeypatch.setattr(
        sources, "tree_digest", lambda top: toy_version["code"] if top == "toy_plugin" else real(top)
    )
    assert statuses(run(tmp_path, histo_plugins)) == ["done", "done"]
    assert statuses(run(tmp_path, histo_plugins)) == ["cached", "cached"]
    toy_version["code"] = "v2"
    assert statuses(run(tmp_path, histo_plugins)) == ["done", "done"]


def test_packages_pinned_by_their_version_and_histo_itself_are_not_hashed(
    dev_plugin: Path, histo_plugins: Plugins, monkeypatch: pytest.MonkeyPatch
) -> None:
    import histo.sources as sources

    dev = histo_plugins.registry("token_aggregators").get("dev_topk")
    assert len(histo_plugins.source_digest(dev)) == 64
    default = histo_plugins.registry("stages").get("tile")
    assert histo_plugins.source_digest(default) == ""  # keyed by histo's version and `version` bumps
    monkeypatch.setattr(sources, "_pinned_by_version", lambda package: True)
    assert histo_plugins.source_digest(dev) == ""


def test_editable_install_is_not_pinned_by_its_version() -> None:
    from importlib.metadata import PackageNotFoundError, distribution

    from histo.sources import _pinned_by_version

    try:
        direct = distribution("histo-hed-tissue").read_text("direct_url.json") or ""
    except PackageNotFoundError:
        pytest.skip("the example package histo-hed-tissue is not installed")
    assert _pinned_by_version("histo-hed-tissue") is ("file:" not in direct)
    assert _pinned_by_version("pydantic") is True  # installed from an index
    assert _pinned_by_version("no-such-distribution-xyz") is False


def test_rerun_forces_a_stage_and_its_dependents(
    dev_plugin: Path, tmp_path: Path, histo_plugins: Plugins
) -> None:
    run(tmp_path, histo_plugins)
    toy_plugin.CALLS.clear()
    assert statuses(run(tmp_path, histo_plugins, ["total"])) == ["cached", "done"]
    assert toy_plugin.CALLS == ["total"]
    toy_plugin.CALLS.clear()
    assert statuses(run(tmp_path, histo_plugins, ["write"])) == ["done", "done"]
    assert toy_plugin.CALLS == ["write", "total"]
    with pytest.raises(RecipeError, match="no stage 'nope'; stages: write, total"):
        run(tmp_path, histo_plugins, ["nope"])


def test_rerun_on_the_command_line(
    dev_plugin: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE)
    args = ["run", str(recipe), "--out", str(tmp_path / "run"), "--quiet"]
    assert main(args) == 0
    toy_plugin.CALLS.clear()
    assert main([*args, "--rerun", "write"]) == 0
    assert toy_plugin.CALLS == ["write", "total"]
    assert main([*args, "--rerun", "typo"]) == 2
    assert "--rerun typo: no stage 'typo'" in capsys.readouterr().err
