"""Classes: distinct non-empty strings, each present in the data, and no data value outside them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from histo.cli import main
from histo.plugins.tasks.classification import ClassificationTask
from histo.plugins.tasks.configs import ClassificationConfig


@pytest.mark.parametrize("classes", [[0, 1], ["a", float("nan")], [True, "b"], [["a"], "b"], ["a", None]])
def test_classes_must_be_strings(classes: list[object]) -> None:
    with pytest.raises(ValidationError, match="classes are strings"):
        ClassificationConfig(column="c", classes=classes)


@pytest.mark.parametrize(
    ("classes", "words"), [([], "at least 2"), (["a", " a"], "unique"), (["a", ""], "empty")]
)
def test_classes_are_distinct_and_non_empty(classes: list[str], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        ClassificationConfig(column="c", classes=classes)


def task(*classes: str) -> ClassificationTask:
    return ClassificationTask(ClassificationConfig(column="dx", classes=list(classes)))


def test_a_listed_class_absent_from_the_data_names_the_close_match() -> None:
    labels = pd.DataFrame({"dx": ["invasive_hot"] * 9 + ["cold"] * 21})
    problems = task("invasive_hott", "cold").check_labels(labels, "cohort.csv")
    assert problems == [
        "class 'invasive_hott' occurs in no patient of column 'dx' in cohort.csv; "
        "did you mean 'invasive_hot' (9 patient(s))?",
        "value 'invasive_hot' in column 'dx' of cohort.csv (9 patient(s)) is not one of the classes "
        "[invasive_hott, cold]; did you mean 'invasive_hott'?",
    ]


def test_numbers_in_the_table_match_quoted_classes_and_missing_values_are_not_problems() -> None:
    labels = pd.DataFrame({"dx": [1.0, 2.0, None, 2.0]})
    assert task("1", "2").check_labels(labels) == []


def test_a_class_typo_fails_the_train_stage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cohort, omics = tmp_path / "cohort.csv", tmp_path / "omics.csv"
    ids = [f"P{i}" for i in range(30)]
    pd.DataFrame({"patient_id": ids, "dx": ["invasive_hot"] * 9 + ["cold"] * 21}).to_csv(cohort, index=False)
    genes = {f"G{g}": [float(i + g) for i in range(30)] for g in range(4)}
    pd.DataFrame({"patient_id": ids, **genes}).to_csv(omics, index=False)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"""stages:
  train:
    stage: train
    params:
      cohort: {{table: {cohort}, label_column: dx, slide_column: null}}
      omics: {{table: {omics}}}
      task: {{name: classification, params: {{column: dx, classes: [invasive_hott, cold]}}}}
      model: {{omics_encoder: snn}}
      training: {{epochs: 1}}
""",
        encoding="utf-8",
    )
    assert main(["run", str(recipe), "--out", str(tmp_path / "run"), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "did you mean 'invasive_hot' (9 patient(s))?" in captured.out + captured.err
    assert not (tmp_path / "run" / "stages" / "train" / "stage.json").exists()
