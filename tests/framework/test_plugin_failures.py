"""Plugin failures are visible where they matter, and exit codes follow one rule (0/1/2/3)."""

from __future__ import annotations

import json
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import toy_plugin
from pydantic import BaseModel, ConfigDict, Field

from histo import ComponentSpec, hookimpl
from histo.cli import main
from histo.interfaces import Stage, StageContext
from histo.io import read_json
from histo.manager import Plugins

RECIPE = """\
name: numbers
stages:
  write:
    stage: write_numbers
    params: {count: 4}
  total:
    stage: sum_numbers
    params: {numbers: write, keep: {name: KEEP}}
"""


class BadDefaultConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    k: int = Field(0, ge=1, description="a default that breaks its own bound")


class RaisingHook:
    @hookimpl
    def histo_token_aggregators(self) -> Iterable[ComponentSpec[Any]]:
        raise RuntimeError("cannot import our CUDA kernels")


class BadDefault:
    @hookimpl
    def histo_token_aggregators(self) -> Iterable[ComponentSpec[Any]]:
        return [ComponentSpec("bad_topk", toy_plugin.TopK, BadDefaultConfig, "broken default")]


class Crashing:
    def __init__(self, config: Any) -> None:
        pass

    def __call__(self, values: list[float]) -> list[float]:
        return [v / 0 for v in values]  # a bug in the plugin's own code


class CrashingPlugin:
    @hookimpl
    def histo_token_aggregators(self) -> Iterable[ComponentSpec[Any]]:
        return [ComponentSpec("crashing_topk", Crashing, toy_plugin.TopKConfig)]


class OwnBugStage(Stage[Any]):
    def run(self, ctx: StageContext) -> None:
        raise KeyError("a bug")


def recipe_file(tmp_path: Path, keep: str = "toy_topk") -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE.replace("KEEP", keep))
    return path


@pytest.fixture
def toy(histo_plugins: Plugins) -> Plugins:
    histo_plugins.register(toy_plugin, "toy", package="histo-toy", version="1.0")
    return histo_plugins


def test_validate_and_run_report_hook_failures(
    toy: Plugins, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toy.register(RaisingHook(), "kernels", package="histo-kernels", version="0.2")
    assert main(["validate", str(recipe_file(tmp_path))]) == 0
    err = capsys.readouterr().err
    assert "plugin kernels (histo-kernels) failed at hook" in err and "cannot import our CUDA kernels" in err
    assert main(["run", str(recipe_file(tmp_path)), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert "cannot import our CUDA kernels" in capsys.readouterr().err
    failures = read_json(tmp_path / "run" / "provenance.json")["plugin_failures"]
    assert failures[0]["plugin"] == "kernels" and failures[0]["phase"] == "hook"


def test_a_name_from_a_failed_hook_says_why_it_is_missing(
    toy: Plugins, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toy.register(RaisingHook(), "kernels", package="histo-kernels")
    assert main(["validate", str(recipe_file(tmp_path, "fast_topk"))]) == 2
    err = capsys.readouterr().err
    assert "unknown token_aggregators 'fast_topk'" in err
    assert "failed to load and may provide it" in err and "cannot import our CUDA kernels" in err


def test_bad_default_is_a_registration_failure_naming_package_and_field(
    toy: Plugins, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toy.register(BadDefault(), "bad", package="histo-bad", version="0.1")
    failure = [f for f in toy.failures if f.phase == "config"]
    assert len(failure) == 1 and failure[0].package == "histo-bad"
    assert "'bad_topk'" in failure[0].message and "field 'k': default 0 is invalid" in failure[0].message
    assert "toy_topk" in toy.registry("token_aggregators")  # the plugin's other components still work

    assert main(["run", str(recipe_file(tmp_path, "bad_topk")), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "token_aggregators 'bad_topk' from histo-bad 0.1 (plugin bad) is unavailable" in err
    assert "field 'k'" in err and not (tmp_path / "r").exists()


def test_plugins_listing_marks_unusable_entries(toy: Plugins, capsys: pytest.CaptureFixture[str]) -> None:
    toy.register(BadDefault(), "bad", package="histo-bad")
    clone = types.ModuleType("clone")
    clone.histo_token_aggregators = toy_plugin.histo_token_aggregators  # type: ignore[attr-defined]
    toy.register(clone, "clone", package="histo-clone")
    assert main(["plugins", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["components"]}
    assert rows["write_numbers"]["usable"] is True and rows["write_numbers"]["problem"] is None
    assert rows["bad_topk"]["usable"] is False and "field 'k'" in rows["bad_topk"]["problem"]
    assert rows["toy_topk"]["usable"] is False and "registered twice" in rows["toy_topk"]["problem"]
    assert main(["plugins"]) == 0
    table = capsys.readouterr().out
    bad_line = next(line for line in table.splitlines() if "bad_topk" in line)
    assert "UNUSABLE" in bad_line and "invalid" in bad_line
    assert "UNUSABLE" not in next(line for line in table.splitlines() if "write_numbers" in line)


def test_exception_in_plugin_code_names_component_package_and_version(
    toy: Plugins, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toy.register(CrashingPlugin(), "crashing", package="histo-crashing", version="0.3.1")
    recipe = recipe_file(tmp_path, "crashing_topk")
    assert main(["run", str(recipe), "--out", str(tmp_path / "run"), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "error in plugin code: token_aggregators 'crashing_topk' from histo-crashing 0.3.1" in out
    assert "ZeroDivisionError" in out and "Traceback" not in out
    stage = read_json(tmp_path / "run" / "summary.json")["stages"][1]
    assert stage["error_kind"] == "plugin"
    assert "ZeroDivisionError" in (tmp_path / "run" / "histo.log").read_text()  # the traceback


def test_a_bug_in_histo_exits_3_and_says_where_the_traceback_is(
    histo_plugins: Plugins, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    own = types.ModuleType("own")

    @hookimpl
    def histo_stages() -> Iterable[ComponentSpec[Any]]:
        return [ComponentSpec("own_bug", OwnBugStage)]

    own.histo_stages = histo_stages  # type: ignore[attr-defined]
    # registered as a default plugin: its code counts as histo's own
    histo_plugins.register(own, "own", package="histo-mml", default=True)
    recipe = tmp_path / "bug.yaml"
    recipe.write_text("stages:\n  a:\n    stage: own_bug\n")
    assert main(["run", str(recipe), "--out", str(tmp_path / "run"), "--quiet"]) == 3
    out = capsys.readouterr().out
    assert "internal error in histo (a bug): KeyError" in out
    assert f"traceback in {tmp_path / 'run' / 'histo.log'}" in out


def test_user_errors_exit_1_and_usage_errors_exit_2(toy: Plugins, tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.replace("KEEP", "toy_topk").replace("{count: 4}", "{count: 4, fail: true}"))
    assert main(["run", str(recipe), "--out", str(tmp_path / "run"), "--quiet"]) == 1
    assert read_json(tmp_path / "run" / "summary.json")["stages"][0]["error_kind"] == "user"
    assert main(["run", str(tmp_path / "missing.yaml")]) == 2


def test_a_bug_outside_a_stage_exits_3_with_the_traceback_in_a_file(
    toy: Plugins, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import histo.recipe

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise AttributeError("'NoneType' object has no attribute 'stages'")

    monkeypatch.setattr(histo.recipe, "load_recipe", broken)
    monkeypatch.delenv("HISTO_DEBUG", raising=False)
    assert main(["validate", str(recipe_file(tmp_path))]) == 3
    err = capsys.readouterr().err
    assert "internal error in histo (a bug): AttributeError" in err and "Traceback" not in err
    path = Path(err.split("traceback in ")[1].split(" (or rerun")[0])
    assert "AttributeError" in path.read_text() and "Traceback" in path.read_text()
    path.unlink()


class DiskFullStage(Stage[Any]):
    def run(self, ctx: StageContext) -> None:
        import errno

        raise OSError(errno.ENOSPC, "No space left on device", str(ctx.out_dir / "big.h5"))


def test_a_full_disk_exits_1_saying_what_to_do(
    histo_plugins: Plugins, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    own = types.ModuleType("own_disk")

    @hookimpl
    def histo_stages() -> Iterable[ComponentSpec[Any]]:
        return [ComponentSpec("fill_disk", DiskFullStage)]

    own.histo_stages = histo_stages  # type: ignore[attr-defined]
    histo_plugins.register(own, "own_disk", package="histo-mml", default=True)
    recipe = tmp_path / "disk.yaml"
    recipe.write_text("stages:\n  a:\n    stage: fill_disk\n")
    assert main(["run", str(recipe), "--out", str(tmp_path / "run"), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "no space left" in out.lower() and "big.h5" in out and "--out" in out
    assert read_json(tmp_path / "run" / "summary.json")["stages"][0]["error_kind"] == "environment"


def test_plugin_code_failing_in_a_worker_process_is_named(toy: Plugins) -> None:
    """DataLoader workers send their traceback as text: the plugin is found in the message."""
    from histo.run.blame import PLUGIN, blame

    message = (
        "Caught ValueError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "/usr/lib/torch/utils/data/_utils/worker.py", line 349, in _worker_loop\n'
        f'  File "{toy_plugin.__file__}", line 24, in __call__\n'
        "ValueError: bad patch"
    )
    try:
        raise RuntimeError(message)
    except RuntimeError as exc:
        found = blame(exc, toy, [("token_aggregators", "toy_topk", "histo-toy", "1.0")])
    assert found.kind == PLUGIN and found.exit_code == 1
    assert "token_aggregators 'toy_topk' from histo-toy 1.0" in found.message
    assert f"{toy_plugin.__file__}:24" in found.message
