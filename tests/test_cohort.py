"""Cohort table loading (real TCGA-STAD clinical table and small bad tables) and the cohort report."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError

from histo.errors import HistoError
from histo.plugins.cohort import (
    Cohort,
    CohortConfig,
    GeneGroupsConfig,
    OmicsConfig,
    cohort_report,
    load_cohort,
    load_omics,
    modalities,
    read_table,
    slide_key,
    write_cohort_report,
)

SURVIVAL = {"time_column": "time_m", "event_column": "dead"}


def stad_config(shared_data: Path) -> CohortConfig:
    return CohortConfig(
        table=shared_data / "omics" / "tcga_stad" / "clinical.csv",
        patient_column="case_id",
        time_column="survival_months",
        event_column="censorship",
        event_is="censored",
    )


def write(tmp_path: Path, text: str, name: str = "cohort.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load(path: Path, **fields: Any) -> Cohort:
    return load_cohort(CohortConfig(table=path, **fields))


# --- the real TCGA-STAD table ------------------------------------------------------------------------


def test_stad_one_row_per_patient_with_every_slide(shared_data: Path) -> None:
    raw = pd.read_csv(shared_data / "omics" / "tcga_stad" / "clinical.csv")
    cohort = load_cohort(stad_config(shared_data))

    assert cohort.patients.index.name == "patient_id"
    assert cohort.patients.index.is_unique
    assert set(cohort.ids) == set(raw["case_id"])
    assert sorted(s for slides in cohort.slides.values() for s in slides) == sorted(raw["slide_id"])
    several = raw.groupby("case_id")["slide_id"].apply(list)
    patient = next(p for p, slides in several.items() if len(slides) > 1)
    assert cohort.slides[patient] == several[patient]
    assert cohort.exclusions == []
    # the pandas row counter (blank header, 0..n-1) is gone; the slide column moved to `slides`
    assert "Unnamed: 0" not in cohort.patients.columns
    assert "slide_id" not in cohort.patients.columns
    assert {"age", "site", "oncotree_code", "survival_months", "censorship"} <= set(cohort.patients.columns)


def test_stad_censorship_is_inverted_into_event(shared_data: Path) -> None:
    raw = pd.read_csv(shared_data / "omics" / "tcga_stad" / "clinical.csv").drop_duplicates("case_id")
    raw = raw.set_index("case_id")
    patients = load_cohort(stad_config(shared_data)).patients

    assert patients["event"].dtype.kind == "i"
    assert patients["time"].dtype.kind == "f"
    assert (patients["event"] == 1 - raw.loc[patients.index, "censorship"]).all()
    assert patients["time"].tolist() == raw.loc[patients.index, "survival_months"].tolist()
    assert int(patients["event"].sum()) == int((raw["censorship"] == 0).sum())


def test_stad_report_lists_modalities(shared_data: Path, tmp_path: Path) -> None:
    cohort = load_cohort(stad_config(shared_data))
    omics = load_omics(OmicsConfig(table=shared_data / "omics" / "tcga_stad" / "rna_xena.csv"))
    first = cohort.ids[:3]
    # feature files are named by the slide stem: X.svs -> X.h5
    available = {slide_key(s) + ".h5" for p in first for s in cohort.slides[p]}

    report = cohort_report(cohort, omics, available)

    expression_ids = set(
        pd.read_csv(shared_data / "omics" / "tcga_stad" / "rna_xena.csv", usecols=[0]).iloc[:, 0]
    )
    assert report["cohort"]["patients"] == len(cohort.ids)
    assert report["cohort"]["slides"] == 343
    assert report["modalities"]["no_omics"] == sorted(set(cohort.ids) - expression_ids)
    assert report["modalities"]["omics_not_in_cohort"] == sorted(expression_ids - set(cohort.ids))
    assert set(report["modalities"]["no_features"]) == set(cohort.ids) - set(first)
    assert report["modalities"]["complete"] == len([p for p in first if p in expression_ids])
    assert report["survival"]["events"] + report["survival"]["censored"] == len(cohort.ids)
    assert report["omics"]["groups"]["all"]["found"] == report["omics"]["genes"]

    path = write_cohort_report(report, tmp_path / "out" / "cohort_report.json")
    assert json.loads(path.read_text()) == json.loads(json.dumps(report))
    assert [p.name for p in path.parent.iterdir()] == ["cohort_report.json"]  # no temp file left


# --- formats ------------------------------------------------------------------------------------------


def test_tsv_by_sniffing_and_ids_kept_as_text(tmp_path: Path) -> None:
    path = write(tmp_path, "patient_id\tslide_id\tgrade\n007\ta.svs\tG2\n008\tb.svs\tG3\n", "cohort.txt")
    cohort = load_cohort(CohortConfig(table=path, label_column="grade"))
    assert cohort.ids == ["007", "008"]
    assert cohort.slides == {"007": ["a.svs"], "008": ["b.svs"]}
    assert cohort.patients["grade"].tolist() == ["G2", "G3"]


def test_semicolon_csv_from_a_spreadsheet_and_gzip(tmp_path: Path) -> None:
    path = write(tmp_path, "patient_id;slide_id\np1;a.svs\n")
    assert load(path).slides == {"p1": ["a.svs"]}
    packed = tmp_path / "cohort.tsv.gz"
    with gzip.open(packed, "wt") as handle:
        handle.write("patient_id\tslide_id\np2\tb.svs\n")
    assert load(packed).slides == {"p2": ["b.svs"]}


def test_blank_lines_do_not_shift_row_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, "patient_id,slide_id,time_m,dead\np1,a,1,1\n\np2,b,-3,0\n")
    frame = read_table(path)
    assert frame.index.tolist() == [2, 4]
    cohort = load(path, **SURVIVAL)
    assert [(e.patient, e.rows) for e in cohort.exclusions] == [("p2", (4,))]


def test_patient_without_slide_is_kept_without_slides(tmp_path: Path) -> None:
    path = write(tmp_path, "patient_id,slide_id\np1,a.svs\np2,\n")
    cohort = load(path)
    assert cohort.slides == {"p1": ["a.svs"], "p2": []}
    assert cohort_report(cohort)["modalities"]["no_slides"] == ["p2"]


def test_first_non_empty_value_of_other_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "patient_id,slide_id,age\np1,a,\np1,b,61\n")
    assert load(path).patients.loc["p1", "age"] == 61


def test_one_row_per_patient_without_slide_column(tmp_path: Path) -> None:
    path = write(tmp_path, "patient_id,time_m,dead\np1,3,1\np2,4,0\n")
    cohort = load(path, slide_column=None, **SURVIVAL)
    assert cohort.ids == ["p1", "p2"]
    assert cohort_report(cohort)["modalities"]["no_slides"] is None


def test_a_cohort_without_slides_is_told_to_set_slide_column_null(tmp_path: Path) -> None:
    path = write(tmp_path, "patient_id,time_m,dead\np1,3,1\np2,4,0\n")
    with pytest.raises(HistoError, match=r"no slide column 'slide_id'.*`slide_column: null`") as info:
        load(path, **SURVIVAL)
    assert str(path) in str(info.value) and "time_m" in str(info.value)


def test_event_words_are_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "patient_id,slide_id,time_m,dead\np1,a,3,True\np2,b,4,no\n")
    assert load(path, **SURVIVAL).patients["event"].tolist() == [1, 0]


# --- errors: the table is ambiguous -------------------------------------------------------------------


def test_duplicate_slide_ids_are_an_error_naming_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "patient_id,slide_id\np1,a.svs\np2,b.svs\np3,a.svs\n")
    with pytest.raises(HistoError, match=r"cohort\.csv: slide 'a\.svs' is listed on rows 2, 4"):
        load(path)


def test_slide_row_without_patient_is_an_error_naming_row(tmp_path: Path) -> None:
    path = write(tmp_path, "patient_id,slide_id\np1,a.svs\n,b.svs\n")
    with pytest.raises(HistoError, match=r"cohort\.csv: row 3 have no 'patient_id'"):
        load(path)


@pytest.mark.parametrize(
    ("column", "values", "fields"),
    [
        ("time_m", ("3", "4"), SURVIVAL),
        ("dead", ("1", "0"), SURVIVAL),
        ("grade", ("G2", "G3"), {"label_column": "grade"}),
    ],
)
def test_conflicting_patient_rows_are_an_error(
    tmp_path: Path, column: str, values: tuple[str, str], fields: dict[str, str]
) -> None:
    rows = {"time_m": ["3", "3"], "dead": ["1", "1"], "grade": ["G2", "G2"]}
    rows[column] = list(values)
    text = "patient_id,slide_id,time_m,dead,grade\np0,z,1,0,G1\n"
    text += "".join(
        f"p1,{s},{rows['time_m'][i]},{rows['dead'][i]},{rows['grade'][i]}\n" for i, s in enumerate("ab")
    )
    path = write(tmp_path, text)
    target = column if column == "grade" else "(time|event)"
    with pytest.raises(HistoError, match=rf"disagree on '{target}'.*patient p1 \(row 3: .*, row 4: ") as info:
        load(path, **fields)
    assert "np." not in str(info.value), "cell values are shown as plain Python values"


def test_patient_rows_agreeing_up_to_float_formatting_are_fine(tmp_path: Path) -> None:
    path = write(tmp_path, "patient_id,slide_id,time_m,dead\np1,a,3.0,1\np1,b,3,1.0\n")
    assert load(path, **SURVIVAL).patients.loc["p1", "time"] == 3.0


def test_event_values_other_than_0_1_are_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "patient_id,slide_id,time_m,dead\np1,a,3,1\np2,b,4,Dead\n")
    with pytest.raises(HistoError, match=r"event column 'dead' must hold 0/1.*row 3: 'Dead'"):
        load(path, **SURVIVAL)


def test_missing_columns_name_the_field_and_what_exists(tmp_path: Path) -> None:
    path = write(tmp_path, "case_id,slide_id\np1,a\n")
    with pytest.raises(HistoError, match=r"patient_column: 'patient_id'.*The file has: case_id, slide_id"):
        load(path)


def test_time_and_event_columns_go_together(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="time_column and event_column go together"):
        CohortConfig(table=tmp_path / "x.csv", time_column="t")
    with pytest.raises(ValidationError, match="extra"):
        CohortConfig(table=tmp_path / "x.csv", label="grade")


def test_existing_time_column_that_is_not_the_time_column_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "patient_id,slide_id,time,time_m,dead\np1,a,9,3,1\n")
    with pytest.raises(HistoError, match="has a column 'time' that is not the configured time_column"):
        load(path, **SURVIVAL)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty"),
        ("patient_id,slide_id\n", "no rows"),
        ("patient_id,slide_id,slide_id\np1,a,b\n", "slide_id appear more than once"),
    ],
)
def test_unusable_files(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(HistoError, match=match):
        load(write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(HistoError, match="no such file"):
        load(tmp_path / "absent.csv")


def test_repeated_patient_without_slide_column_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "patient_id,grade\np1,G2\np1,G2\n")
    with pytest.raises(HistoError, match=r"patient p1 appears on rows 2, 3"):
        load(path, slide_column=None)


# --- exclusions: one patient's target is unusable -----------------------------------------------------


def test_unusable_survival_is_excluded_with_rows_and_reason(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "patient_id,slide_id,time_m,dead\n"
        "p1,a,3,1\n"
        "p2,b,-1,0\n"  # negative
        "p3,c,,1\n"  # missing
        "p4,d,'--,0\n"  # TCGA's placeholder
        "p5,e,5,\n"  # no event
        "p6,f,inf,1\n"
        "p6,g,inf,1\n",
    )
    cohort = load(path, **SURVIVAL)
    assert cohort.ids == ["p1"]
    assert list(cohort.slides) == ["p1"]
    found = {e.patient: (e.rows, e.reason) for e in cohort.exclusions}
    assert found["p2"] == ((3,), "survival time (time_m) is -1; it must be >= 0 and finite")
    assert found["p3"] == ((4,), "survival time (time_m) is empty")
    assert found["p4"] == ((5,), 'survival time (time_m) is not a number ("\'--")')
    assert found["p5"] == ((6,), "event (dead) is empty")
    assert found["p6"][0] == (7, 8)
    assert all(e.file == str(path) for e in cohort.exclusions)
    report = cohort_report(cohort)
    assert [e["patient"] for e in report["exclusions"]] == ["p2", "p3", "p4", "p5", "p6"]


def test_missing_label_is_excluded(tmp_path: Path) -> None:
    path = write(tmp_path, "patient_id,slide_id,grade\np1,a,G2\np2,b,\np3,c,G3\n")
    cohort = load(path, label_column="grade")
    assert cohort.ids == ["p1", "p3"]
    assert [(e.patient, e.rows) for e in cohort.exclusions] == [("p2", (3,))]
    assert cohort_report(cohort)["label"] == {"column": "grade", "classes": {"G2": 1, "G3": 1}}


def test_everyone_excluded_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "patient_id,slide_id,time_m,dead\np1,a,-1,1\n")
    with pytest.raises(HistoError, match="every patient was excluded"):
        load(path, **SURVIVAL)


def test_modalities_match_features_by_slide_stem(tmp_path: Path) -> None:
    path = write(tmp_path, "patient_id,slide_id\np1,A.1.svs\np1,B.svs\np2,C.ndpi\np3,\n")
    cohort = load(path)
    omics_path = write(tmp_path, "id,G1\np1,1.0\np3,2.0\np9,3.0\n", "omics.csv")
    omics = load_omics(OmicsConfig(table=omics_path, groups=GeneGroupsConfig(genes={"g": ["G1"]})))
    table = modalities(cohort, omics, {"A.1", "C.svs"})
    assert table.to_dict("index") == {
        "p1": {"has_slides": True, "has_omics": True, "has_features": True},
        "p2": {"has_slides": True, "has_omics": False, "has_features": True},
        "p3": {"has_slides": False, "has_omics": True, "has_features": False},
    }
    report = cohort_report(cohort, omics, {"A.1", "C.svs"})
    assert report["modalities"]["slides_without_features"] == ["B.svs"]
    assert report["modalities"]["omics_not_in_cohort"] == ["p9"]
    assert report["modalities"]["complete"] == 1
