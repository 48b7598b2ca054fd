from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import toy_plugin
import yaml

from histo.cli import main
from histo.io import read_json
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
    params: {numbers: write, keep: {name: toy_topk, params: {k: 3}}}
"""


@pytest.fixture
def toy(register_plugin: Any) -> Any:
    toy_plugin.CALLS.clear()
    return register_plugin(toy_plugin, "toy")


def run(tmp_path: Path, text: str = RECIPE, overrides: list[str] | None = None) -> Any:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    return run_recipe(load_recipe(recipe, overrides), tmp_path / "run", quiet=True)


def test_run_directory_holds_provenance(toy: Any, tmp_path: Path) -> None:
    result = run(tmp_path)
    run_dir = tmp_path / "run"
    assert result.ok
    resolved = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    assert resolved["stages"]["total"]["params"]["keep"]["params"]["k"] == 3
    assert len((run_dir / "recipe.sha256").read_text().strip()) == 64
    provenance = read_json(run_dir / "provenance.json")
    assert provenance["histo"] and provenance["torch"] and provenance["python"]
    assert "<test>" in provenance["plugin_packages"] and "histo-mml" in provenance["plugin_packages"]
    summary = read_json(run_dir / "summary.json")
    assert summary["status"] == "done"
    assert [s["status"] for s in summary["stages"]] == ["done", "done"]
    assert summary["stages"][1]["metrics"] == {"total": 6}  # 3 + 2 + 1
    assert "total: running stage sum_numbers" in (run_dir / "histo.log").read_text()


def test_unchanged_stages_are_skipped(toy: Any, tmp_path: Path) -> None:
    run(tmp_path)
    assert toy_plugin.CALLS == ["write", "total"]
    toy_plugin.CALLS.clear()
    second = run(tmp_path)
    assert toy_plugin.CALLS == []
    assert [s["status"] for s in second.summary["stages"]] == ["cached", "cached"]
    assert second.summary["stages"][1]["metrics"] == {"total": 6}


def test_changed_config_reruns_stage_and_downstream_only(toy: Any, tmp_path: Path) -> None:
    run(tmp_path)
    toy_plugin.CALLS.clear()
    third = run(tmp_path, overrides=["stages.total.params.keep.params.k=1"])
    assert toy_plugin.CALLS == ["total"]
    assert third.summary["stages"][1]["metrics"] == {"total": 3}
    toy_plugin.CALLS.clear()
    run(tmp_path, overrides=["stages.write.params.count=2"])
    assert toy_plugin.CALLS == ["write", "total"]


def test_changed_input_file_invalidates(toy: Any, tmp_path: Path) -> None:
    source = tmp_path / "extra.txt"
    source.write_text("10 20")
    text = RECIPE.replace("{count: 4}", f"{{count: 4, source: {source}}}")
    assert run(tmp_path, text).summary["stages"][1]["metrics"] == {"total": 33}
    toy_plugin.CALLS.clear()
    source.write_text("10 20 30")
    os.utime(source, ns=(1, 1))  # a different mtime even on coarse clocks
    assert run(tmp_path, text).summary["stages"][1]["metrics"] == {"total": 60}
    assert toy_plugin.CALLS == ["write", "total"]


def test_interrupted_stage_resumes_in_place(toy: Any, tmp_path: Path) -> None:
    run(tmp_path)
    stage_dir = tmp_path / "run" / "stages" / "write"
    record = read_json(stage_dir / "stage.json")
    # what a kill mid-stage leaves: the in-progress marker, some outputs, no stage.json
    (stage_dir / "stage.json").unlink()
    (stage_dir / "in_progress.json").write_text(json.dumps({"fingerprint": record["fingerprint"]}))
    (stage_dir / "partial-output").write_text("kept")
    toy_plugin.CALLS.clear()
    result = run(tmp_path)
    assert toy_plugin.CALLS == ["write"]  # total is still valid: same upstream key
    assert (stage_dir / "partial-output").exists()
    assert not (stage_dir / "in_progress.json").exists()
    assert [s["status"] for s in result.summary["stages"]] == ["done", "cached"]


def test_stale_outputs_of_another_config_are_removed(toy: Any, tmp_path: Path) -> None:
    run(tmp_path)
    stale = tmp_path / "run" / "stages" / "write" / "stale"
    stale.write_text("x")
    run(tmp_path, overrides=["stages.write.params.count=3"])
    assert not stale.exists()


def test_failed_stage_stops_the_run(toy: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.replace("{count: 4}", "{count: 4, fail: true}"))
    assert main(["run", str(recipe), "--out", str(tmp_path / "run"), "--quiet"]) == 1
    summary = read_json(tmp_path / "run" / "summary.json")
    assert summary["status"] == "failed"
    assert summary["stages"][0] == {**summary["stages"][0], "status": "failed", "error": "asked to fail"}
    assert summary["stages"][1]["status"] == "not run"
    assert not (tmp_path / "run" / "stages" / "write" / "stage.json").exists()
    assert "Traceback" not in capsys.readouterr().err


def test_skipped_items_are_recorded_and_strict_fails(toy: Any, tmp_path: Path) -> None:
    text = RECIPE.replace("{count: 4}", "{count: 4, skip_every: 2}")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    assert main(["run", str(recipe), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    lines = (tmp_path / "run" / "stages" / "write" / "failures.jsonl").read_text().splitlines()
    assert [json.loads(line)["item"] for line in lines] == ["item-0", "item-2"]
    assert read_json(tmp_path / "run" / "summary.json")["failures"] == 2
    recipe.write_text("strict: true\n" + text)
    assert main(["run", str(recipe), "--out", str(tmp_path / "strict"), "--quiet"]) == 1


def test_upgraded_component_package_invalidates(tmp_path: Path) -> None:
    from histo.manager import Plugins, set_plugins

    def run_with(version: str) -> Any:
        plugins = Plugins(load_entry_points=False, env={})
        plugins.register(toy_plugin, "toy", package="histo-toy", version=version)
        set_plugins(plugins)
        try:
            recipe = tmp_path / "recipe.yaml"
            recipe.write_text(RECIPE)
            return run_recipe(
                load_recipe(recipe, plugins=plugins), tmp_path / "run", plugins=plugins, quiet=True
            )
        finally:
            set_plugins(None)

    toy_plugin.CALLS.clear()
    run_with("1.0")
    run_with("1.0")
    assert toy_plugin.CALLS == ["write", "total"]
    run_with("1.1")  # the stages' own package changed too, so both rerun
    assert toy_plugin.CALLS == ["write", "total", "write", "total"]


def test_atomic_writes_get_normal_permissions(tmp_path: Path) -> None:
    from histo.io import atomic_path

    with atomic_path(tmp_path / "out.txt") as tmp:
        tmp.write_text("x")
    mode = (tmp_path / "out.txt").stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask
    assert not list(tmp_path.glob("*.partial"))
