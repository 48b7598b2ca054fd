"""What a TCGA / GDC cohort is built from, and the choices that decide who is in it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from histo.recipe.refs import InputPath

from .barcodes import SAMPLE_TYPES, SLIDE_TYPES

DAYS_PER_MONTH = 365.25 / 12  # GDC counts days; cBioPortal's OS_MONTHS divides by 30.4375 as well


class ClinicalConfig(BaseModel):
    """Overall survival per case, from a GDC clinical TSV, a cBioPortal patient file or any table."""

    model_config = ConfigDict(extra="forbid")

    table: InputPath = Field(
        description="GDC `clinical.tsv` (case_submitter_id, vital_status, days_to_death, "
        "days_to_last_follow_up), cBioPortal `data_clinical_patient.txt` (PATIENT_ID, OS_MONTHS, "
        "OS_STATUS) or any CSV/TSV with one case per row (format: columns)"
    )
    format: Literal["auto", "gdc", "cbioportal", "columns"] = Field(
        "auto", description="`auto` recognises GDC and cBioPortal by their column names"
    )
    patient_column: str | None = Field(
        None, description="format columns: the case id column (case barcodes, TCGA-XX-XXXX)"
    )
    time_column: str | None = Field(None, description="format columns: follow-up time")
    event_column: str | None = Field(None, description="format columns: 0/1 event indicator")
    event_is: Literal["event", "censored"] = Field(
        "event",
        description="format columns: what a 1 in event_column means (`censored`: SurvPath's censorship)",
    )
    time_unit: Literal["days", "months"] = Field(
        "months", description="format columns: the unit of time_column (GDC is days, cBioPortal months)"
    )
    keep_columns: list[str] = Field(
        default_factory=list, description="further clinical columns copied into cohort.csv (e.g. age)"
    )

    @model_validator(mode="after")
    def _columns_format(self) -> ClinicalConfig:
        named = [self.patient_column, self.time_column, self.event_column]
        if self.format == "columns" and None in named:
            raise ValueError("format: columns needs patient_column, time_column and event_column")
        if self.format != "columns" and any(n is not None for n in named):
            raise ValueError("patient_column, time_column and event_column are for format: columns only")
        return self


class ExpressionConfig(BaseModel):
    """Expression per sample: a Xena matrix, or GDC's per-sample STAR count files."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["xena", "star"] = Field(
        description="`xena`: one matrix, genes x samples (Xena) or samples x genes, barcodes as ids; "
        "`star`: a folder of GDC `*.augmented_star_gene_counts.tsv` files, one per aliquot"
    )
    path: InputPath = Field(description="the Xena matrix file, or the folder holding the STAR files")
    value: str = Field(
        "tpm_unstranded",
        description="star: the column to read (tpm_unstranded, fpkm_unstranded, fpkm_uq_unstranded, "
        "unstranded, ...)",
    )
    genes: Literal["gene_name", "gene_id"] = Field(
        "gene_name",
        description="star: symbols (rows of one symbol are summed, before any log) or Ensembl ids "
        "(version suffix kept)",
    )
    gene_types: list[str] | None = Field(
        default_factory=lambda: ["protein_coding"],
        description="star: keep genes of these `gene_type`s; null keeps every gene",
    )
    input_scale: Literal["linear", "log2p1", "log2p001"] = Field(
        "log2p1",
        description="xena: what the matrix holds: log2(x+1) (GDC hub matrices), log2p001 = log2(x+0.001) "
        "(UCSC Toil recompute, minimum -9.9658) or linear; star files are always linear",
    )
    scale: Literal["linear", "log2p1"] = Field(
        "log2p1", description="what omics.csv holds: linear (TPM, ...) or log2(x+1); recorded in the report"
    )


class TcgaCohortConfig(BaseModel):
    """A TCGA cohort from what a lab downloads from GDC, Xena or cBioPortal; docs/cohorts.md."""

    model_config = ConfigDict(extra="forbid")

    clinical: ClinicalConfig = Field(description="overall survival per case")
    slides: InputPath | None = Field(
        None,
        description="a folder searched recursively for slide files named by TCGA barcode, as GDC names "
        "them (`TCGA-CR-7395-01A-01-TS1.<uuid>.svs`, each possibly in a folder named by file id)",
    )
    sample_sheets: list[InputPath] = Field(
        default_factory=list,
        description="GDC sample sheets (TSV: File ID, File Name, ..., Case ID, Sample ID, Sample Type): "
        "which case and sample each downloaded file belongs to (STAR files are named by UUID)",
    )
    expression: ExpressionConfig | None = Field(None, description="expression per sample")
    sample_types: list[str] = Field(
        default_factory=lambda: ["01"],
        description="TCGA sample type codes to use, for slides and expression: 01 primary tumour, "
        "11 solid tissue normal, 06 metastatic, ...",
    )
    slide_types: list[Literal["DX", "TS", "BS", "MS"]] = Field(
        default_factory=lambda: ["DX"],  # type: ignore[arg-type]
        description="DX: formalin-fixed diagnostic slides (FFPE); TS/BS/MS: frozen top/bottom/middle "
        "sections",
    )
    require: list[Literal["slides", "expression", "survival"]] | None = Field(
        None,
        description="what a case needs to be in the cohort; default every source that is given "
        "(survival always, slides with `slides`, expression with `expression`)",
    )
    time_unit: Literal["months", "days"] = Field("months", description="the unit of `time` in cohort.csv")
    link_slides: bool = Field(
        True,
        description="put links to the chosen slide files in slides/ of the output, so that a tile stage "
        "can read exactly the cohort's slides with `slides_from`",
    )

    @field_validator("sample_types")
    @classmethod
    def _known_sample_types(cls, values: list[str]) -> list[str]:
        cleaned = [str(v).strip().zfill(2) for v in values]
        unknown = [v for v in cleaned if v not in SAMPLE_TYPES]
        if unknown or not cleaned:
            known = ", ".join(f"{k} ({v})" for k, v in SAMPLE_TYPES.items())
            raise ValueError(f"unknown sample type code(s) {unknown}; TCGA codes are {known}")
        return cleaned

    @field_validator("slide_types")
    @classmethod
    def _some_slide_types(cls, values: list[str]) -> list[str]:
        if not values:
            raise ValueError(f"give at least one slide type: {', '.join(SLIDE_TYPES)}")
        return values

    @model_validator(mode="after")
    def _requirements_have_sources(self) -> TcgaCohortConfig:
        missing = {"slides": self.slides is None, "expression": self.expression is None}
        absent = [r for r in self.require or () if missing.get(r)]
        if absent:
            raise ValueError(f"require lists {absent} but no such source is given; set it or drop it")
        return self

    def required(self) -> list[str]:
        if self.require is not None:
            return list(self.require)
        given = ["survival"]
        if self.slides is not None:
            given.append("slides")
        if self.expression is not None:
            given.append("expression")
        return given
