"""Cross-validation folds: generated and imported (the published TCGA-STAD folds), and their guarantees."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from histo.errors import HistoError
from histo.plugins.cohort import (
    CohortConfig,
    Fold,
    SplitConfig,
    export_splits,
    load_cohort,
    make_splits,
    split_files,
    splits_summary,
)


@pytest.fixture(scope="module")
def stad(shared_data: Path) -> pd.DataFrame:
    config = CohortConfig(
        table=shared_data / "omics" / "tcga_stad" / "clinical.csv",
        patient_column="case_id",
        time_column="survival_months",
        event_column="censorship",
        event_is="censored",
    )
    return load_cohort(config).patients


@pytest.fixture(scope="module")
def stad_splits(shared_data: Path) -> Path:
    return shared_data / "omics" / "tcga_stad" / "splits"


def toy(n: int = 60, classes: int = 3, groups: int | None = None) -> pd.DataFrame:
    ids = [f"p{i:03d}" for i in range(n)]
    frame = pd.DataFrame(
        {"label": [f"c{i % classes}" for i in range(n)], "event": [i % 2 for i in range(n)]},
        index=pd.Index(ids, name="patient_id"),
    )
    if groups is not None:
        frame["site"] = [f"s{i % groups}" for i in range(n)]
    return frame


def assert_disjoint(fold: Fold) -> None:
    assert not set(fold.train) & set(fold.val)
    assert not set(fold.train) & set(fold.test)
    assert not set(fold.val) & set(fold.test)


# --- generated ----------------------------------------------------------------------------------------


def test_generated_folds_partition_the_patients(stad: pd.DataFrame) -> None:
    folds = make_splits(stad, SplitConfig(folds=5, stratify="event", val_fraction=0.2), seed=7)
    assert len(folds) == 5
    tests = [p for fold in folds for p in fold.test]
    assert sorted(tests) == sorted(stad.index)  # every patient in exactly one test fold
    overall = stad["event"].mean()
    for fold in folds:
        assert_disjoint(fold)
        assert sorted(fold.train + fold.val + fold.test) == sorted(stad.index)
        assert abs(len(fold.val) - 0.2 * (len(fold.train) + len(fold.val))) <= 1
        for part in (fold.test, fold.val):
            assert abs(stad.loc[part, "event"].mean() - overall) < 0.05


def test_generated_folds_by_label_keep_class_proportions() -> None:
    patients = toy(90, classes=3)
    for fold in make_splits(patients, SplitConfig(folds=3, stratify="label"), label_column="label", seed=1):
        assert patients.loc[fold.test, "label"].value_counts().tolist() == [10, 10, 10]
        assert patients.loc[fold.val, "label"].value_counts().tolist() == [4, 4, 4]


def test_seed_decides_the_folds(stad: pd.DataFrame) -> None:
    config = SplitConfig(stratify="event")
    first = make_splits(stad, config, seed=1)
    assert [f.test for f in make_splits(stad, config, seed=1)] == [f.test for f in first]
    assert [f.val for f in make_splits(stad, config, seed=1)] == [f.val for f in first]
    assert [f.test for f in make_splits(stad, config, seed=2)] != [f.test for f in first]
    # the config's own seed wins over the recipe seed
    assert [f.test for f in make_splits(stad, SplitConfig(stratify="event", seed=1), seed=2)] == [
        f.test for f in first
    ]


@pytest.mark.parametrize("stratify", ["event", "none"])
def test_sites_never_straddle_a_fold(stad: pd.DataFrame, stratify: str) -> None:
    config = SplitConfig(stratify=stratify, group_column="site")
    folds = make_splits(stad, config, seed=3)
    assert sorted(p for f in folds for p in f.test) == sorted(stad.index)
    for fold in folds:
        sides = [set(stad.loc[part, "site"]) for part in (fold.train, fold.val, fold.test)]
        assert not sides[0] & sides[1] and not sides[0] & sides[2] and not sides[1] & sides[2]
        assert fold.val  # a validation set exists even with whole-site groups


def test_missing_group_value_is_its_own_group() -> None:
    patients = toy(40, groups=8)
    patients.loc[["p000", "p001"], "site"] = None
    folds = make_splits(patients, SplitConfig(folds=4, group_column="site"), seed=0)
    assert sorted(p for f in folds for p in f.test) == sorted(patients.index)


def test_no_validation_set() -> None:
    folds = make_splits(toy(), SplitConfig(folds=3, val_fraction=0.0), seed=0)
    assert all(f.val == [] and len(f.train) == 40 for f in folds)


@pytest.mark.parametrize(
    ("config", "label", "match"),
    [
        (SplitConfig(folds=5, stratify="label"), "label", "stratum 'c3' has 3 patient"),
        (SplitConfig(folds=5, group_column="site"), None, "has 4 group"),
        (SplitConfig(stratify="label"), None, "no label column"),
        (SplitConfig(group_column="centre"), None, "group_column 'centre' is not a cohort column"),
    ],
)
def test_impossible_splits_are_errors(config: SplitConfig, label: str | None, match: str) -> None:
    patients = toy(33, classes=10, groups=4)
    with pytest.raises(HistoError, match=match):
        make_splits(patients, config, label_column=label, seed=0)


def test_missing_strata_values_are_an_error() -> None:
    patients = toy()
    patients.loc["p005", "label"] = None
    with pytest.raises(HistoError, match="p005 have no 'label'"):
        make_splits(patients, SplitConfig(folds=3, stratify="label"), label_column="label")


def test_fold_refuses_overlapping_parts() -> None:
    with pytest.raises(HistoError, match=r"fold 2: patient\(s\) b are in both train and test"):
        Fold(index=2, train=["a", "b"], val=[], test=["b"])


# --- imported -----------------------------------------------------------------------------------------


def test_published_stad_folds(stad: pd.DataFrame, stad_splits: Path) -> None:
    config = SplitConfig(files=stad_splits, stratify="event", val_fraction=0.2)
    folds = make_splits(stad, config, seed=42)
    assert [Path(f.source or "").name for f in folds] == [f"splits_{k}.csv" for k in range(5)]
    for fold, path in zip(folds, split_files(config), strict=True):
        raw = pd.read_csv(path)
        assert sorted(fold.test) == sorted(raw["val"].dropna())  # `val` of the file = held-out test fold
        assert sorted(fold.train + fold.val) == sorted(raw["train"].dropna())  # val carved from train
        assert_disjoint(fold)
        share = len(fold.val) / len(raw["train"].dropna())
        assert 0.19 < share < 0.21
        assert fold.not_in_cohort == [] and fold.unassigned == []
    assert sorted(p for f in folds for p in f.test) == sorted(stad.index)


def test_published_stad_folds_respect_sites(stad: pd.DataFrame, stad_splits: Path) -> None:
    folds = make_splits(stad, SplitConfig(files=stad_splits, group_column="site"), seed=42)
    for fold in folds:
        test_sites = set(stad.loc[fold.test, "site"])
        assert not test_sites & set(stad.loc[fold.train + fold.val, "site"])
        assert not set(stad.loc[fold.val, "site"]) & set(stad.loc[fold.train, "site"])


def test_ids_missing_from_cohort_are_recorded(stad: pd.DataFrame, stad_splits: Path) -> None:
    smaller = stad.drop(index=stad.index[:10])
    folds = make_splits(smaller, SplitConfig(files=stad_splits), seed=0)
    for fold in folds:
        assert set(fold.not_in_cohort) == set(stad.index[:10])
        assert not set(fold.train + fold.val + fold.test) & set(stad.index[:10])
    assert [s["not_in_cohort"] for s in splits_summary(folds)] == [10] * 5


def test_cohort_patients_absent_from_a_file_are_unassigned(tmp_path: Path) -> None:
    patients = toy(10)
    (tmp_path / "splits_0.csv").write_text("train,val\np000,p008\np001,p009\np002,\np003,\nghost,\n")
    (fold,) = make_splits(patients, SplitConfig(files=tmp_path, val_fraction=0.25), seed=0)
    assert fold.not_in_cohort == ["ghost"]
    assert fold.unassigned == ["p004", "p005", "p006", "p007"]
    assert fold.test == ["p008", "p009"] and len(fold.val) == 1 and len(fold.train) == 3


def test_export_then_import_gives_the_same_folds(tmp_path: Path) -> None:
    patients = toy(50)
    folds = make_splits(patients, SplitConfig(folds=4, stratify="event"), seed=5)
    written = export_splits(folds, tmp_path / "out")
    assert [p.name for p in written] == [f"splits_{k}.csv" for k in range(4)]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [p.name for p in written]  # no temp files
    again = make_splits(patients, SplitConfig(files=tmp_path / "out", stratify="event"), seed=99)
    assert [(f.train, f.val, f.test) for f in again] == [(f.train, f.val, f.test) for f in folds]


def test_natural_file_order(tmp_path: Path) -> None:
    for k in (10, 2, 1):
        (tmp_path / f"splits_{k}.csv").write_text("train,val\np000,p001\n")
    assert [p.name for p in split_files(SplitConfig(files=tmp_path))] == [
        "splits_1.csv",
        "splits_2.csv",
        "splits_10.csv",
    ]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("train,test_ids\np000,p001\n", "needs columns train and val"),
        ("train,val\np000,p001\np001,\n", r"p001 are in both train and val"),
        ("train,val,test\np000,p001,p001\n", r"p001 are in both val and test"),
        ("train,val\np000,ghost\n", "no test patient of this file is in the cohort"),
    ],
)
def test_bad_split_files(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "splits_0.csv").write_text(text)
    with pytest.raises(HistoError, match=match):
        make_splits(toy(10), SplitConfig(files=tmp_path, val_fraction=0.0))


def test_group_straddling_in_a_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "splits_0.csv").write_text("train,val\np000,p004\np001,p005\n")  # p000 and p004 share s0
    with pytest.raises(HistoError, match=r"site group\(s\) s0, s1 have patients in both train and test"):
        make_splits(toy(8, groups=4), SplitConfig(files=tmp_path, group_column="site", val_fraction=0.0))


def test_empty_or_missing_split_folder(tmp_path: Path) -> None:
    with pytest.raises(HistoError, match="no file matches"):
        make_splits(toy(), SplitConfig(files=tmp_path))
    with pytest.raises(HistoError, match="neither a folder nor a file"):
        make_splits(toy(), SplitConfig(files=tmp_path / "absent"))


def test_validation_carving_is_seeded_and_stratified(stad: pd.DataFrame, stad_splits: Path) -> None:
    config = SplitConfig(files=stad_splits, stratify="event")
    a, b = make_splits(stad, config, seed=1), make_splits(stad, config, seed=2)
    assert [f.val for f in a] == [f.val for f in make_splits(stad, config, seed=1)]
    assert [f.val for f in a] != [f.val for f in b]
    assert [f.test for f in a] == [f.test for f in b]  # the published test folds never move
    for fold in a:
        train_rate = stad.loc[fold.train + fold.val, "event"].mean()
        assert abs(stad.loc[fold.val, "event"].mean() - train_rate) < 0.03
