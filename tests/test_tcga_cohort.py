"""TCGA / GDC cohorts: barcodes, sample sheets, GDC and cBioPortal clinical files, Xena and STAR expression,
the replicate rule, the match report, and the shipped recipe on the real TCGA-STAD tables."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from histo.cli import main
from histo.errors import HistoError
from histo.plugins.cohort.tcga import (
    ClinicalConfig,
    ExpressionConfig,
    TcgaCohortConfig,
    build_tcga_cohort,
    parse_barcode,
    read_expression,
    read_survival,
    write_tcga_cohort,
)
from histo.plugins.cohort.tcga.config import DAYS_PER_MONTH
from histo.plugins.cohort.tcga.example import write_example
from histo.plugins.cohort.tcga.sample_sheet import COLUMNS

ROOT = Path(__file__).resolve().parents[1]

# --- barcodes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "case", "sample", "parts"),
    [
        (
            "TCGA-CR-7395-01A-01-TS1.5a8f3c2e-aaaa.svs",
            "TCGA-CR-7395",
            "TCGA-CR-7395-01A",
            {"slide_type": "TS", "slide_number": "1", "portion": "01", "analyte": None},
        ),
        (
            "TCGA-3M-AB46-01Z-00-DX1.70F638A0-BDCB.svs",
            "TCGA-3M-AB46",
            "TCGA-3M-AB46-01Z",
            {"slide_type": "DX", "vial": "Z"},
        ),
        (
            "TCGA-CR-7395-11A-11R-A00Z-07",
            "TCGA-CR-7395",
            "TCGA-CR-7395-11A",
            {"sample_type": "11", "analyte": "R", "plate": "A00Z", "center": "07", "slide_type": None},
        ),
        ("TCGA-BR-8372-01", "TCGA-BR-8372", "TCGA-BR-8372-01", {"vial": None, "portion": None}),
        ("TCGA-BR-8372", "TCGA-BR-8372", None, {"sample_type": None}),
        ("tcga-cr-7395-01a-01-bs1.svs", "TCGA-CR-7395", "TCGA-CR-7395-01A", {"slide_type": "BS"}),
    ],
)
def test_barcodes(text: str, case: str, sample: str | None, parts: dict[str, Any]) -> None:
    barcode = parse_barcode(text)
    assert barcode is not None
    assert (barcode.case_id, barcode.sample_id) == (case, sample)
    assert {k: getattr(barcode, k) for k in parts} == parts


@pytest.mark.parametrize("text", ["slide.svs", "TCGA-CR-73951", "TCGA-CR", "XTCGA-CR-7395-01"])
def test_not_barcodes(text: str) -> None:
    assert parse_barcode(text) is None


# --- clinical files -----------------------------------------------------------------------------------


def gdc_clinical(tmp_path: Path, cases: dict[str, tuple[str, str, str]]) -> Path:
    """A GDC clinical.tsv: one row per case and treatment (two rows each), `'--` for missing values."""
    lines = ["case_id\tcase_submitter_id\tproject_id\tvital_status\tdays_to_death\tdays_to_last_follow_up"]
    for case, (status, death, follow) in cases.items():
        for treatment_follow in (follow, "'--" if follow == "'--" else str(int(follow) // 2)):
            lines.append(f"uuid-{case}\t{case}\tTCGA-STAD\t{status}\t{death}\t{treatment_follow}")
    path = tmp_path / "clinical.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_gdc_clinical_days_to_months(tmp_path: Path) -> None:
    path = gdc_clinical(
        tmp_path,
        {
            "TCGA-AA-0001": ("Dead", "300", "'--"),
            "TCGA-AA-0002": ("Alive", "'--", "900"),
            "TCGA-AA-0003": ("Dead", "'--", "'--"),
            "TCGA-AA-0004": ("Not Reported", "'--", "100"),
        },
    )
    survival = read_survival(ClinicalConfig(table=path), unit="months")
    assert survival.format == "gdc"
    table = survival.table
    assert table.loc["TCGA-AA-0001", "time"] == pytest.approx(300 / DAYS_PER_MONTH)
    assert table.loc["TCGA-AA-0001", "event"] == 1
    # the latest follow-up of the case's rows counts (900, not the 450 of its other row)
    assert table.loc["TCGA-AA-0002", "time"] == pytest.approx(900 / DAYS_PER_MONTH)
    assert table.loc["TCGA-AA-0002", "event"] == 0
    reasons = {e.patient: e.reason for e in survival.exclusions}
    assert reasons["TCGA-AA-0003"] == "survival time (days_to_death) is missing"
    assert "vital status" in reasons["TCGA-AA-0004"]
    assert read_survival(ClinicalConfig(table=path), unit="days").table.loc["TCGA-AA-0001", "time"] == 300


def test_cbioportal_clinical(tmp_path: Path) -> None:
    path = tmp_path / "data_clinical_patient.txt"
    path.write_text(
        "#Patient Identifier\tOverall Survival (Months)\tOverall Survival Status\n"
        "#Identifier\tMonths\tStatus\n#STRING\tNUMBER\tSTRING\n#1\t1\t1\n"
        "PATIENT_ID\tOS_MONTHS\tOS_STATUS\n"
        "TCGA-AA-0001\t10.5\t1:DECEASED\nTCGA-AA-0002\t20\t0:LIVING\nTCGA-AA-0003\t\tLIVING\n"
        "TCGA-AA-0004\t5\tDECEASED\n"
    )
    survival = read_survival(ClinicalConfig(table=path), unit="days")
    assert survival.format == "cbioportal"
    assert survival.table["event"].to_dict() == {"TCGA-AA-0001": 1, "TCGA-AA-0002": 0, "TCGA-AA-0004": 1}
    assert survival.table.loc["TCGA-AA-0001", "time"] == pytest.approx(10.5 * DAYS_PER_MONTH)
    (excluded,) = survival.exclusions
    assert excluded.patient == "TCGA-AA-0003" and excluded.rows == (8,)  # its line in the file


def test_unknown_clinical_format_says_what_to_set(tmp_path: Path) -> None:
    path = tmp_path / "clin.csv"
    path.write_text("id,months,dead\nTCGA-AA-0001,3,1\n")
    with pytest.raises(HistoError, match="format: columns"):
        read_survival(ClinicalConfig(table=path))


def test_stad_clinical_as_columns(shared_data: Path) -> None:
    table = shared_data / "omics" / "tcga_stad" / "clinical.csv"
    config = ClinicalConfig(
        table=table,
        format="columns",
        patient_column="case_id",
        time_column="survival_months",
        event_column="censorship",
        event_is="censored",
    )
    survival = read_survival(config)
    raw = pd.read_csv(table).groupby("case_id").first()
    assert len(survival.table) == len(raw) == 319
    assert (survival.table["event"] == 1 - raw.loc[survival.table.index, "censorship"]).all()
    assert np.allclose(survival.table["time"], raw.loc[survival.table.index, "survival_months"])


# --- expression -----------------------------------------------------------------------------------------

STAR_HEADER = "gene_id\tgene_name\tgene_type\tunstranded\tstranded_first\tstranded_second\ttpm_unstranded"


def star_file(path: Path, tpm: dict[str, float]) -> None:
    """A GDC augmented_star_gene_counts.tsv: a comment line, four N_ rows, genes (one symbol twice)."""
    rows = ["# gene-model: GENCODE v36", STAR_HEADER]
    rows += [f"{n}\t\t\t10\t10\t10\t" for n in ("N_unmapped", "N_multimapping", "N_noFeature", "N_ambiguous")]
    for i, (gene, value) in enumerate(tpm.items()):
        rows.append(f"ENSG{i:011d}.1\t{gene}\tprotein_coding\t5\t2\t3\t{value}")
    rows.append("ENSG99999999999.1\tGENEA\tprotein_coding\t1\t1\t1\t1.0")  # PAR_Y-like duplicate symbol
    rows.append("ENSG88888888888.1\tLNC1\tlncRNA\t1\t1\t1\t50.0")
    path.write_text("\n".join(rows) + "\n")


def sheet(path: Path, rows: list[tuple[str, str, str, str, str]]) -> Path:
    """GDC sample sheet rows: (file name, data type, case, sample, sample type)."""
    lines = ["\t".join(COLUMNS)]
    for i, (name, data_type, case, sample, kind) in enumerate(rows):
        category = "Transcriptome Profiling" if "Expression" in data_type else "Biospecimen"
        lines.append(
            f"{i:08d}-0000-0000-0000-000000000000\t{name}\t{category}\t{data_type}\tTCGA-STAD\t"
            f"{case}\t{sample}\t{kind}"
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def test_star_files_through_a_sample_sheet(tmp_path: Path) -> None:
    folder = tmp_path / "star"
    names = {}
    for key, tpm in {
        "a1": {"GENEA": 3.0, "GENEB": 0.0},  # case 1, tumour
        "a2": {"GENEA": 7.0, "GENEB": 1.0},  # case 1, normal
        "b1": {"GENEA": 1.0, "GENEB": 2.0},  # case 2, tumour vial A
        "b2": {"GENEA": 9.0, "GENEB": 9.0},  # case 2, tumour vial B
    }.items():
        sub = folder / f"uuid-{key}"
        sub.mkdir(parents=True)
        names[key] = f"{key}-uuid.rna_seq.augmented_star_gene_counts.tsv"
        star_file(sub / names[key], tpm)
    gx = "Gene Expression Quantification"
    sheet_path = sheet(
        tmp_path / "sheet.tsv",
        [
            (names["a1"], gx, "TCGA-AA-0001", "TCGA-AA-0001-01A", "Primary Tumor"),
            (names["a2"], gx, "TCGA-AA-0001", "TCGA-AA-0001-11A", "Solid Tissue Normal"),
            (names["b1"], gx, "TCGA-AA-0002", "TCGA-AA-0002-01A", "Primary Tumor"),
            (names["b2"], gx, "TCGA-AA-0002", "TCGA-AA-0002-01B", "Primary Tumor"),
        ],
    )
    from histo.plugins.cohort.tcga import read_sample_sheets

    sheets = read_sample_sheets([sheet_path])
    config = ExpressionConfig(format="star", path=folder, scale="log2p1")
    expression = read_expression(config, sheets, ["01"])
    table = expression.table
    # GENEA is summed over its two rows (3 + 1), then log2(x + 1); the lncRNA is dropped
    assert list(table.columns) == ["GENEA", "GENEB"]
    assert table.loc["TCGA-AA-0001", "GENEA"] == pytest.approx(math.log2(3 + 1 + 1))
    assert expression.chosen["TCGA-AA-0002"].barcode.sample_id == "TCGA-AA-0002-01B"  # highest vial
    notes = {Path(n.item).name: n.reason for n in expression.notes}
    assert "sample type 11 (Solid Tissue Normal)" in notes[names["a2"]]
    assert "Firehose" in notes[names["b1"]]
    assert expression.description["scale"] == "log2p1" and expression.description["input_scale"] == "linear"
    # normal tissue chosen instead: the other profile of case 1
    normal = read_expression(config.model_copy(update={"scale": "linear"}), sheets, ["11"]).table
    assert list(normal.index) == ["TCGA-AA-0001"] and normal.loc["TCGA-AA-0001", "GENEA"] == 8.0


def test_firehose_rule_among_aliquots(tmp_path: Path) -> None:
    """Xena genes x samples with aliquot barcodes: H > R > T, then the later plate."""
    ids = [
        "TCGA-AA-0001-01A-11T-A999-07",
        "TCGA-AA-0001-01A-11R-A100-07",
        "TCGA-AA-0001-01A-11H-A001-07",
        "TCGA-AA-0002-01A-11R-A100-07",
        "TCGA-AA-0002-01A-21R-A200-07",
        "TCGA-AA-0003-11A-11R-A100-07",
    ]
    matrix = pd.DataFrame(np.arange(12, dtype=float).reshape(2, 6), index=["G1", "G2"], columns=ids)
    path = tmp_path / "xena.tsv"
    matrix.rename_axis("sample").to_csv(path, sep="\t")
    expression = read_expression(
        ExpressionConfig(format="xena", path=path, input_scale="linear", scale="linear"), {}, ["01"]
    )
    assert expression.description["orientation"] == "genes x samples"
    chosen = {case: p.key for case, p in expression.chosen.items()}
    assert chosen == {"TCGA-AA-0001": ids[2], "TCGA-AA-0002": ids[4]}
    assert expression.table.loc["TCGA-AA-0001"].tolist() == [2.0, 8.0]


def test_negative_values_cannot_be_log_transformed(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    pd.DataFrame({"G1": [-1.0]}, index=pd.Index(["TCGA-AA-0001-01"], name="id")).to_csv(path)
    config = ExpressionConfig(format="xena", path=path, input_scale="linear", scale="log2p1")
    with pytest.raises(HistoError, match=r"TCGA-AA-0001.*input_scale"):
        read_expression(config, {}, ["01"])


def test_stad_xena_scale_conversion(shared_data: Path) -> None:
    """log2(TPM + 0.001) -> log2(TPM + 1), exactly, on the real matrix."""
    path = shared_data / "omics" / "tcga_stad" / "rna_xena.csv"
    raw = pd.read_csv(path, index_col=0)
    config = ExpressionConfig(format="xena", path=path, input_scale="log2p001", scale="log2p1")
    table = read_expression(config, {}, ["01"]).table
    assert table.shape == raw.shape
    expected = np.log2(np.clip(2.0 ** raw.loc[table.index] - 0.001, 0, None) + 1)
    assert np.allclose(table.to_numpy(), expected.to_numpy())
    assert table.to_numpy().min() >= 0


# --- slides and matching ---------------------------------------------------------------------------------


def test_slides_choices_and_match_report(tmp_path: Path) -> None:
    slides = tmp_path / "slides"
    names = {
        "dx1": "TCGA-AA-0001-01Z-00-DX1.A1.svs",
        "dx2": "TCGA-AA-0001-01Z-00-DX2.A2.svs",
        "ts": "TCGA-AA-0001-01A-01-TS1.A3.svs",
        "normal": "TCGA-AA-0001-11A-01-TS1.A4.svs",
        "only_frozen": "TCGA-AA-0002-01A-01-BS1.B1.svs",
        "dx3": "TCGA-AA-0003-01Z-00-DX1.C1.svs",
        "other": "scan_0001.svs",
    }
    for i, name in enumerate(names.values()):
        (slides / f"file-{i}").mkdir(parents=True)
        (slides / f"file-{i}" / name).write_bytes(b"slide")
    sheet_path = sheet(
        tmp_path / "sheet.tsv",
        [
            (names["dx1"], "Slide Image", "TCGA-AA-0001", "TCGA-AA-0001-01Z", "Primary Tumor"),
            (names["dx3"], "Slide Image", "TCGA-AA-0009", "TCGA-AA-0009-01Z", "Primary Tumor"),  # disagrees
            (
                "TCGA-AA-0004-01Z-00-DX1.D1.svs",
                "Slide Image",
                "TCGA-AA-0004",
                "TCGA-AA-0004-01Z",
                "Primary Tumor",
            ),
        ],
    )
    clinical = tmp_path / "clinical.csv"
    clinical.write_text(
        "case_id,months,dead,age\nTCGA-AA-0001,10,1,60\nTCGA-AA-0002,20,0,70\n"
        "TCGA-AA-0003,5,0,50\nTCGA-AA-0004,7,1,40\n"
    )
    config = TcgaCohortConfig(
        clinical=ClinicalConfig(
            table=clinical,
            format="columns",
            patient_column="case_id",
            time_column="months",
            event_column="dead",
            keep_columns=["age"],
        ),
        slides=slides,
        sample_sheets=[sheet_path],
    )
    cohort = build_tcga_cohort(config)
    assert cohort.matched == ["TCGA-AA-0001"]
    assert [s.slide_id for s in cohort.slides["TCGA-AA-0001"]] == [names["dx1"], names["dx2"]]
    reasons = cohort.cases["reasons"].to_dict()
    assert "BS (frozen, bottom section) is not in slide_types ['DX']" in reasons["TCGA-AA-0002"]
    assert "gives case TCGA-AA-0009" in reasons["TCGA-AA-0003"]
    assert "not found below" in reasons["TCGA-AA-0004"] and "not downloaded" in reasons["TCGA-AA-0004"]
    report = cohort.report()
    assert report["counts"]["matched"] == 1 and report["counts"]["cases_with_several_slides"] == 1
    not_used = {Path(n["item"]).name: n["reason"] for n in report["files_not_used"]}
    assert "not a TCGA slide barcode" in not_used[names["other"]]
    assert "sample type 11" in not_used[names["normal"]]

    written = write_tcga_cohort(cohort, tmp_path / "out")
    table = pd.read_csv(written["cohort.csv"], dtype={"sample_type": str})
    assert table["slide_id"].tolist() == [names["dx1"], names["dx2"]]
    assert table[["time", "event", "age", "site"]].iloc[0].tolist() == [10.0, 1, 60, "AA"]
    links = sorted((tmp_path / "out" / "slides").iterdir())
    assert [p.name for p in links] == sorted([names["dx1"], names["dx2"]]) and all(
        p.is_symlink() for p in links
    )

    # frozen sections instead: the same files, another choice in the recipe
    frozen = build_tcga_cohort(config.model_copy(update={"slide_types": ["TS", "BS"]}))
    assert frozen.matched == ["TCGA-AA-0001", "TCGA-AA-0002"]
    assert [s.slide_id for s in frozen.slides["TCGA-AA-0001"]] == [names["ts"]]


def test_config_errors() -> None:
    clinical = ClinicalConfig(table=Path("c.tsv"))
    with pytest.raises(ValidationError, match="unknown sample type"):
        TcgaCohortConfig(clinical=clinical, sample_types=["99"])
    with pytest.raises(ValidationError, match="no such source"):
        TcgaCohortConfig(clinical=clinical, require=["slides"])
    with pytest.raises(ValidationError, match="patient_column, time_column and event_column"):
        ClinicalConfig(table=Path("c.csv"), format="columns", patient_column="id")


# --- the shipped recipe ------------------------------------------------------------------------------------


def test_example_files_are_gdc_style(shared_data: Path, tmp_path: Path) -> None:
    sheet_path = write_example(tmp_path / "gdc", shared_data, cases=30)
    table = pd.read_csv(sheet_path, sep="\t", dtype=str)
    assert list(table.columns) == list(COLUMNS)
    on_disk = sorted(p.name for p in (tmp_path / "gdc" / "slides").rglob("*.svs"))
    assert len(on_disk) == len(table) - 1  # the 29th case's diagnostic slide is listed, not downloaded
    for path in (tmp_path / "gdc" / "slides").rglob("*.svs"):
        assert path.parent.name == table.set_index("File Name").at[path.name, "File ID"]


@pytest.mark.slow
def test_shipped_recipe_builds_and_trains_on_tcga_stad(shared_data: Path, tmp_path: Path) -> None:
    write_example(tmp_path / "gdc", shared_data)
    text = (ROOT / "recipes" / "tcga_stad_cohort.yaml").read_text()
    text = text.replace("runs/tcga_stad_gdc", str(tmp_path / "gdc")).replace(
        "../shared/data", str(shared_data)
    )
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    out = tmp_path / "run"
    code = main(
        ["run", str(recipe), "--out", str(out), "--quiet", "--set", "stages.train.params.training.epochs=2",
         "--set", "stages.train.params.training.selection.protocol=holdout"],
    )
    assert code == 0
    stage = out / "stages" / "cohort"
    report = json.loads((stage / "match_report.json").read_text())
    counts = report["counts"]
    # 319 clinical cases + 18 with RNA only; unmatched: those 18, one without RNA, 11 without a usable slide
    assert counts["cases_seen"] == 337 and counts["matched"] == 307
    unmatched = {u["case_id"]: u["reasons"] for u in report["unmatched"]}
    assert any("no expression" in r for r in unmatched["TCGA-CD-A487"])
    assert report["expression"]["input_scale"] == "log2p001" and report["expression"]["scale"] == "log2p1"
    cohort = pd.read_csv(stage / "cohort.csv")
    assert cohort["patient_id"].nunique() == 307 and cohort["slide_id"].str.contains("-DX").all()
    log = (out / "histo.log").read_text()
    assert "307 of 337 cases matched" in log
    stages = {s["id"]: s for s in json.loads((out / "summary.json").read_text())["stages"]}
    assert "stages/cohort/match_report.json" in stages["cohort"]["artifacts"]
    assert stages["cohort"]["metrics"]["cases_matched"] == 307
    train = out / "stages" / "train"
    predictions = pd.read_csv(train / "predictions.csv")
    assert set(predictions["patient_id"]) == set(cohort["patient_id"])
    assert json.loads((train / "cohort_report.json").read_text())["usable_patients"] == 307


def test_cli_builds_the_same_cohort(shared_data: Path, tmp_path: Path) -> None:
    gdc = tmp_path / "gdc"
    write_example(gdc, shared_data, cases=40)
    stad = shared_data / "omics" / "tcga_stad"
    code = main(
        [
            "cohort",
            "tcga",
            "--out",
            str(tmp_path / "out"),
            "--clinical",
            str(stad / "clinical.csv"),
            "--clinical-columns",
            "case_id",
            "survival_months",
            "censorship",
            "--censored",
            "--slides",
            str(gdc / "slides"),
            "--sample-sheet",
            str(gdc / "gdc_sample_sheet.tsv"),
            "--slide-type",
            "DX",
            "--slide-type",
            "TS",
        ]
    )
    assert code == 0
    report = json.loads((tmp_path / "out" / "match_report.json").read_text())
    assert report["settings"]["slide_types"] == ["DX", "TS"] and report["expression"] is None
    table = pd.read_csv(tmp_path / "out" / "cohort.csv")
    assert table["slide_type"].isin(["DX", "TS"]).all() and (table["slide_type"] == "TS").any()
    assert (
        main(["cohort", "tcga", "--out", str(tmp_path / "x"), "--clinical", str(tmp_path / "none.tsv")]) == 1
    )


WSI = """\
seed: 1
stages:
  cohort:
    stage: tcga_cohort
    params:
      clinical: {{table: {stad}/clinical.csv, format: columns, patient_column: case_id,
                  time_column: survival_months, event_column: censorship, event_is: censored}}
      slides: {gdc}/slides
      sample_sheets: [{gdc}/gdc_sample_sheet.tsv]
  tile:
    stage: tile
    params: {{slides_from: cohort, magnifications: ["5x"], patch_size: 64, qc_thumbnails: false}}
  extract:
    stage: extract
    params: {{tiles: tile, extractor: {{name: handcrafted, params: {{input_size: 32}}}}}}
  train:
    stage: train
    params:
      data_from: cohort
      cohort: {{table: cohort.csv, time_column: time, event_column: event}}
      features: {{stage: extract}}
      task: {{name: survival, params: {{loss: cox}}}}
      model: {{slide_encoder: mean}}
      splits: {{folds: 2, stratify: event}}
      training: {{epochs: 1, batch_size: 8, selection: {{protocol: holdout}}}}
"""


@pytest.mark.slow
def test_the_cohorts_slides_are_tiled_and_trained_on(shared_data: Path, tmp_path: Path) -> None:
    """tile `slides_from` the cohort stage reads exactly its chosen slides (frozen and normal ones not)."""
    gdc = tmp_path / "gdc"
    write_example(gdc, shared_data, cases=12)
    recipe = tmp_path / "wsi.yaml"
    recipe.write_text(WSI.format(stad=shared_data / "omics" / "tcga_stad", gdc=gdc))
    assert main(["run", str(recipe), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    stages = tmp_path / "run" / "stages"
    cohort = pd.read_csv(stages / "cohort" / "cohort.csv")
    tiled = pd.read_csv(stages / "tile" / "slides.csv")
    assert sorted(tiled["slide_id"] + ".svs") == sorted(cohort["slide_id"])
    assert cohort["slide_id"].str.contains("-DX").all()
    predictions = pd.read_csv(stages / "train" / "predictions.csv")
    assert set(predictions["patient_id"]) == set(cohort["patient_id"])


def test_event_words_in_a_columns_table_are_an_error(tmp_path: Path) -> None:
    path = tmp_path / "clin.csv"
    path.write_text("case,days,status\nTCGA-AA-0001,3,Dead\nTCGA-AA-0002,4,1\n")
    config = ClinicalConfig(
        table=path,
        format="columns",
        patient_column="case",
        time_column="days",
        event_column="status",
        time_unit="days",
    )
    with pytest.raises(HistoError, match=r"row 2: 'Dead'.*GDC format"):
        read_survival(config)


def test_a_gdc_download_with_star_files_and_gdc_clinical(tmp_path: Path) -> None:
    """One sample sheet for slides and STAR files (named by UUID), GDC clinical in days, TPM -> log2(x+1)."""
    slides, star = tmp_path / "slides", tmp_path / "star"
    slides.mkdir()
    star.mkdir()
    rows = []
    for i, case in enumerate(["TCGA-AA-0001", "TCGA-AA-0002", "TCGA-AA-0003"]):
        slide = f"{case}-01Z-00-DX1.S{i}.svs"
        (slides / slide).write_bytes(b"slide")
        rows.append((slide, "Slide Image", case, f"{case}-01Z", "Primary Tumor"))
        if i < 2:  # the third case has no RNA
            name = f"uuid{i}.rna_seq.augmented_star_gene_counts.tsv"
            star_file(star / name, {"GENEA": float(i), "GENEB": 2.0})
            rows.append((name, "Gene Expression Quantification", case, f"{case}-01A", "Primary Tumor"))
    sheet_path = sheet(tmp_path / "gdc_sample_sheet.tsv", rows)
    clinical = gdc_clinical(
        tmp_path,
        {
            "TCGA-AA-0001": ("Dead", "365", "'--"),
            "TCGA-AA-0002": ("Alive", "'--", "730"),
            "TCGA-AA-0003": ("Alive", "'--", "100"),
        },
    )
    config = TcgaCohortConfig(
        clinical=ClinicalConfig(table=clinical),
        slides=slides,
        sample_sheets=[sheet_path],
        expression=ExpressionConfig(format="star", path=star),
        time_unit="days",
    )
    cohort = build_tcga_cohort(config)
    assert cohort.matched == ["TCGA-AA-0001", "TCGA-AA-0002"]
    assert cohort.cases.loc["TCGA-AA-0003", "reasons"].startswith("no expression")
    written = write_tcga_cohort(cohort, tmp_path / "out")
    table = pd.read_csv(written["cohort.csv"])
    assert table[["time", "event"]].to_numpy().tolist() == [[365.0, 1.0], [730.0, 0.0]]
    omics = pd.read_csv(written["omics.csv"], index_col="patient_id")
    assert omics.loc["TCGA-AA-0002", "GENEA"] == pytest.approx(math.log2(1 + 1 + 1))  # 1 + the duplicate row
    assert omics.loc["TCGA-AA-0001", "GENEB"] == pytest.approx(math.log2(2 + 1))
    report = json.loads(written["match_report.json"].read_text())
    assert report["survival"]["format"] == "gdc" and report["survival"]["time_unit"] == "days"
    assert report["expression"]["value"] == "tpm_unstranded" and report["expression"]["scale"] == "log2p1"
