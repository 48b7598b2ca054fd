"""The expression table: one row per patient, one column per gene, restricted to the gene groups.

Errors: duplicate or blank patient ids, text in a gene column, a group with no gene in the table,
negative values under log2p1. Missing or infinite values follow `missing` (default: the patient is
excluded from omics, recorded with row and genes; it may still be used through its slides).
Genes requested by a group but absent from the table are counted in the report, not errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from histo.errors import HistoError
from histo.recipe.refs import InputPath

from .exclusions import Exclusion
from .genesets import GeneGroupsConfig, resolve_groups
from .table import few, read_table, rows_text, shown
from .transforms import OmicsPreprocessConfig

ALL_GENES = "all"


class OmicsConfig(BaseModel):
    """The expression table, its gene groups and the per-fold preprocessing."""

    model_config = ConfigDict(extra="forbid")

    table: InputPath = Field(description="CSV/TSV, one row per patient, gene symbols as columns.")
    patient_column: str | None = Field(
        default=None, description="Column with the patient id; default: the first column."
    )
    log_transform: Literal["none", "log2p1"] = Field(
        default="none",
        description="'log2p1' applies log2(x + 1) to raw counts/TPM (values must be >= 0); 'none' for "
        "tables that are already log-scaled (UCSC Xena, SurvPath).",
    )
    missing: Literal["exclude_patient", "drop_gene", "error"] = Field(
        default="exclude_patient",
        description="Missing (blank/NA) or infinite values in a grouped gene: 'exclude_patient' drops the "
        "patient from omics and records it; 'drop_gene' drops the gene for everyone and reports it; "
        "'error' stops with the rows and genes.",
    )
    groups: GeneGroupsConfig = Field(
        default=GeneGroupsConfig(), description="Gene groups (one omics encoder each); default: all genes."
    )
    preprocess: OmicsPreprocessConfig = Field(
        default=OmicsPreprocessConfig(), description="Per-fold preprocessing, fitted on training patients."
    )


@dataclass(frozen=True)
class GroupReport:
    requested: int
    found: int
    missing: int
    missing_examples: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "found": self.found,
            "missing": self.missing,
            "missing_examples": list(self.missing_examples),
        }


@dataclass
class OmicsTable:
    """`data`: patients (index `patient_id`) x the genes of any group, float64 (log-scaled if asked)."""

    file: Path
    data: pd.DataFrame
    groups: dict[str, list[str]]
    reports: dict[str, GroupReport]
    exclusions: list[Exclusion] = field(default_factory=list)
    dropped_genes: list[str] = field(default_factory=list)
    unused_genes: int = 0

    @property
    def ids(self) -> list[str]:
        return self.data.index.tolist()

    def group(self, name: str) -> pd.DataFrame:
        return self.data[self.groups[name]]


def _numeric(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Gene columns as float; text that is not a number is an error (a metadata column, a typo)."""
    values = frame.apply(pd.to_numeric, errors="coerce")
    text = values.isna() & frame.notna()
    if text.to_numpy().any():
        genes = text.columns[text.any()].tolist()
        rows = text.index[text[genes[0]]].tolist()
        raise HistoError(
            f"{path}: gene column(s) {few(genes)} hold text that is not a number (e.g. {genes[0]!r} on "
            f"{rows_text(rows, 3)}: {shown(frame.at[rows[0], genes[0]])}). Remove non-expression columns or "
            "set patient_column."
        )
    return values.astype(float)


def _found_groups(
    requested: dict[str, list[str]], genes: pd.Index, path: Path
) -> tuple[dict[str, list[str]], dict[str, GroupReport]]:
    present = set(genes)
    groups, reports = {}, {}
    for name, wanted in requested.items():
        found = [g for g in wanted if g in present]
        missing = [g for g in wanted if g not in present]
        if not found:
            raise HistoError(
                f"{path}: gene group {name!r} has none of its {len(wanted)} genes in the table (it asks for "
                f"{few(wanted)}; the table's columns start {few(genes, 5)}). Check that both use the same "
                "gene identifiers (symbols vs Ensembl ids)."
            )
        groups[name] = found
        reports[name] = GroupReport(len(wanted), len(found), len(missing), tuple(missing[:10]))
    return groups, reports


def load_omics(config: OmicsConfig) -> OmicsTable:
    """Read and check the expression table and resolve its gene groups (see the module docstring)."""
    path = Path(config.table)
    frame = read_table(path, [config.patient_column], drop_row_counter=config.patient_column is not None)
    id_column = config.patient_column or str(frame.columns[0])
    if id_column not in frame.columns:
        raise HistoError(
            f"{path}: patient_column {id_column!r} not found; the table starts with columns "
            f"{few(frame.columns, 5)}"
        )
    ids = frame[id_column]
    if ids.isna().any():
        raise HistoError(
            f"{path}: {rows_text(ids.index[ids.isna()].tolist())} have no patient id in column "
            f"{id_column!r}; fill it in or delete the row"
        )
    repeated = ids[ids.duplicated(keep=False)]
    if not repeated.empty:
        first = repeated.iloc[0]
        where = rows_text(repeated.index[repeated == first].tolist())
        raise HistoError(
            f"{path}: patient {first} has several rows ({where}; "
            f"{repeated.nunique()} patient(s) repeated). Keep one row per patient (e.g. one sample per case)."
        )
    genes_frame = frame.drop(columns=[id_column])
    if genes_frame.shape[1] == 0:
        raise HistoError(f"{path}: no gene columns besides the patient id column {id_column!r}")

    requested = resolve_groups(config.groups)
    if requested:
        groups, reports = _found_groups(requested, genes_frame.columns, path)
    else:
        genes = genes_frame.columns.tolist()
        groups, reports = {ALL_GENES: genes}, {ALL_GENES: GroupReport(len(genes), len(genes), 0)}
    used = list(dict.fromkeys(g for genes in groups.values() for g in genes))
    values = _numeric(genes_frame[used], path)
    values.index = pd.Index(ids.astype(str), name="patient_id")
    rows = pd.Series(frame.index, index=values.index)

    exclusions: list[Exclusion] = []
    dropped: list[str] = []
    bad = ~np.isfinite(values.to_numpy())
    if bad.any():
        bad_frame = pd.DataFrame(bad, index=values.index, columns=values.columns)
        bad_patients = bad_frame.index[bad_frame.any(axis=1)].tolist()
        bad_genes = bad_frame.columns[bad_frame.any(axis=0)].tolist()
        empty_genes = bad_frame.columns[bad_frame.all(axis=0)].tolist()
        if empty_genes and config.missing != "drop_gene":  # it would exclude every patient
            raise HistoError(
                f"{path}: gene column(s) {few(empty_genes)} hold no value for any patient "
                f"({len(empty_genes)} gene(s)), so no patient has complete expression; set "
                "`missing: drop_gene` in the omics section, or remove those genes from the table or groups"
            )
        if config.missing == "error":
            first = bad_patients[0]
            raise HistoError(
                f"{path}: missing or infinite values for {len(bad_patients)} patient(s) in {len(bad_genes)} "
                f"gene(s), e.g. patient {first} (row {rows[first]}): "
                f"{few(bad_frame.columns[bad_frame.loc[first]])}. Fix the table or set "
                "missing: exclude_patient / drop_gene."
            )
        if config.missing == "exclude_patient":
            for patient in bad_patients:
                genes = bad_frame.columns[bad_frame.loc[patient]].tolist()
                exclusions.append(
                    Exclusion(
                        file=str(path),
                        patient=patient,
                        rows=(int(rows[patient]),),
                        reason=f"missing or infinite expression for {few(genes)}",
                    )
                )
            values = values.drop(index=bad_patients)
        else:
            dropped = bad_genes
            values = values.drop(columns=dropped)
            for name in groups:
                groups[name] = [g for g in groups[name] if g not in set(dropped)]
            emptied = [name for name, genes in groups.items() if not genes]
            if emptied:
                raise HistoError(
                    f"{path}: gene group {emptied[0]!r} has no gene left after dropping genes with "
                    f"missing values ({few(dropped)}); fix the table or use missing: exclude_patient"
                )
        if values.empty:
            raise HistoError(f"{path}: no patient has complete expression for the grouped genes")

    if config.log_transform == "log2p1":
        negative = values.lt(0)
        if negative.to_numpy().any():
            gene = negative.columns[negative.any()][0]
            patient = negative.index[negative[gene]][0]
            raise HistoError(
                f"{path}: log_transform log2p1 needs values >= 0, but gene {gene} of patient {patient} "
                f"(row {rows[patient]}) is {values.at[patient, gene]:g} "
                f"(minimum {values.to_numpy().min():g}). "
                "The table looks log-scaled already: use log_transform: none."
            )
        values = np.log2(values + 1.0)
    return OmicsTable(
        file=path,
        data=values,
        groups=groups,
        reports=reports,
        exclusions=exclusions,
        dropped_genes=dropped,
        unused_genes=genes_frame.shape[1] - len(used),
    )
