"""recipes/ablation_planted.yaml end to end, shrunk to 2 seeds of 24 patients and one epoch per stage:
every row trains on the same seeds and the effects tables come out (the full run: docs/ablation.md)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from histo.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _shrink(node: Any) -> None:
    if isinstance(node, dict):
        if "epochs" in node:
            node["epochs"] = 1
        for value in node.values():
            _shrink(value)


@pytest.mark.slow
def test_ablation_recipe_on_two_seeds(tmp_path: Path) -> None:
    recipe = yaml.safe_load((ROOT / "recipes" / "ablation_planted.yaml").read_text())
    recipe["stages"]["planted"]["params"]["planted"] = {"seeds": 2, "patients_per_seed": 24}
    _shrink(recipe["stages"])
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    stages = tmp_path / "run" / "stages"
    with (stages / "ablation" / "ablation_effects.csv").open() as handle:
        effects = list(csv.DictReader(handle))
    assert {row["component"] for row in effects} == set(recipe["stages"]["ablation"]["params"]["effects"])
    assert all(row["n"] == "2" and row["same_folds"] == "True" for row in effects)
    with (stages / "presets" / "presets_effects.csv").open() as handle:
        presets = list(csv.DictReader(handle))
    assert {row["metric"] for row in presets} == {"auc", "accuracy"} and len(presets) == 4
    # every row saw the same test patients in the same seed
    tests = {}
    for stage in ("teacher", "teacher_reference", "student", "distilled", "student_no_aggregation"):
        with (stages / stage / "predictions.csv").open() as handle:
            tests[stage] = {(r["fold"], r["patient_id"]) for r in csv.DictReader(handle)}
    assert len({frozenset(v) for v in tests.values()}) == 1
