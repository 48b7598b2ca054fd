"""The input preflight of `histo run` and `histo validate --inputs`: every problem, before any stage."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from histo.cli import main

ROOT = Path(__file__).resolve().parents[1]


def tables(tmp_path: Path) -> tuple[Path, Path]:
    cohort, omics = tmp_path / "cohort.csv", tmp_path / "omics.csv"
    ids = [f"P{i:02d}" for i in range(12)]
    pd.DataFrame({"patient_id": ids, "dx": ["a", "b"] * 6}).to_csv(cohort, index=False)
    pd.DataFrame({"case": [f"X{i}" for i in range(12)], "G1": range(12), "G2": range(12)}).to_csv(
        omics, index=False
    )
    return cohort, omics


RECIPE = """\
stages:
  tile:
    stage: tile
    params: {{slides: {missing_slides}}}
  train:
    stage: train
    params:
      cohort: {{table: {cohort}, label_column: {label}, slide_column: null}}
      omics: {{table: {omics}}}
      task: {{name: classification, params: {{column: {label}, classes: [a, bb]}}}}
      model: {{omics_encoder: snn}}
      splits: {{files: {missing_splits}}}
"""


def test_every_input_problem_is_reported_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cohort, omics = tables(tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        RECIPE.format(
            missing_slides=tmp_path / "nowhere",
            cohort=cohort,
            omics=omics,
            label="dx",
            missing_splits=tmp_path / "splits",
        )
    )
    for command in (
        ["validate", "--inputs", str(recipe)],
        ["run", str(recipe), "--out", str(tmp_path / "run")],
    ):
        assert main(command) == 1
        message = capsys.readouterr().err
        assert "stages.tile.params.slides (line 4):" in message and "nowhere does not exist" in message
        assert "stages.train.params.splits.files (line 12):" in message
    assert not (tmp_path / "run").exists()  # nothing ran

    recipe.write_text(
        RECIPE.format(
            missing_slides=cohort, cohort=cohort, omics=omics, label="dx", missing_splits=cohort
        ).replace(f"splits: {{files: {cohort}}}", "splits: {folds: 2}")
    )
    assert main(["validate", "--inputs", str(recipe)]) == 1
    message = capsys.readouterr().err
    assert "stages.train.params.task.params.classes" in message and "class 'bb'" in message
    assert "did you mean 'b'" in message
    assert "stages.train.params.omics.table" in message and "no patient id of" in message

    recipe.write_text(recipe.read_text().replace("label_column: dx", "label_column: dxx"))
    assert main(["validate", "--inputs", str(recipe)]) == 1
    message = capsys.readouterr().err
    assert "stages.train.params.cohort" in message and "'dxx'" in message


def test_plain_validate_checks_the_recipe_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages:\n  tile: {stage: tile, params: {slides: nowhere}}\n")
    assert main(["validate", str(recipe)]) == 0
    capsys.readouterr()
    assert main(["validate", "--inputs", str(recipe)]) == 1
    assert "relative to the current folder" in capsys.readouterr().err


def test_a_shipped_recipe_on_real_tables_passes(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)  # its paths are relative to the checkout
    assert main(["validate", "--inputs", "recipes/tcga_stad_omics_survival.yaml"]) == 0
    assert "inputs checked" in capsys.readouterr().out


def test_tables_from_an_earlier_stage_are_not_checked_before_it_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["validate", "--inputs", str(ROOT / "recipes" / "quickstart.yaml")]) == 0
