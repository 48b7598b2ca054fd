"""Expression per TCGA sample: a Xena matrix or GDC's per-aliquot STAR count files, one profile per case.

Which profile a case gets: a sample of the first listed `sample_types` that has one; among several
aliquots of it, the Broad GDAC Firehose replicate rule (`barcodes.aliquot_preference`). GDC sample
sheets name samples, not aliquots, so of several files of one sample there the highest sample id
(vial) and then file id is kept. Values are converted to the requested scale exactly (log2(x+1) or linear).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from histo.errors import HistoError

from ..table import few, read_table
from .barcodes import Barcode, aliquot_preference, parse_barcode, sample_type_name
from .config import ExpressionConfig
from .sample_sheet import SheetEntry

STAR_COLUMNS = ("gene_id", "gene_name", "gene_type")


@dataclass(frozen=True)
class Profile:
    """One expression profile: a matrix column/row or a STAR file, and whose it is."""

    key: str  # the id in the matrix, or the file path
    barcode: Barcode
    source: str  # "id in the matrix" / "file name" / "sample sheet row N"
    tie_break: str = ""


@dataclass
class FileNote:
    """A file (or matrix id) that was not used, and why."""

    item: str
    reason: str
    case: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"item": self.item, "case": self.case, "reason": self.reason}


@dataclass
class Expression:
    table: pd.DataFrame  # case_id x genes, in `scale`
    chosen: dict[str, Profile]
    notes: list[FileNote] = field(default_factory=list)
    description: dict[str, Any] = field(default_factory=dict)


def _is_barcode(value: object) -> bool:
    return isinstance(value, str) and parse_barcode(value) is not None


def _read_xena(path: Path) -> tuple[pd.DataFrame, str]:
    """(ids x genes, orientation): Xena's genes x samples is transposed; samples x genes is kept."""
    frame = read_table(path, [None])
    first = frame.columns[0]
    ids_in_header = [c for c in frame.columns[1:] if _is_barcode(str(c))]
    if ids_in_header:
        matrix = frame.set_index(first).T
        orientation = "genes x samples"
    elif frame[first].map(_is_barcode).any():
        matrix = frame.set_index(first)
        orientation = "samples x genes"
    else:
        raise HistoError(
            f"{path}: no TCGA barcode among its column names or in its first column; a Xena matrix has "
            "sample barcodes (TCGA-XX-XXXX-01) as columns, genes as rows"
        )
    matrix.index = matrix.index.astype(str)
    matrix.columns = matrix.columns.astype(str)
    repeated = matrix.index[matrix.index.duplicated()].unique().tolist()
    if repeated:
        raise HistoError(
            f"{path}: sample id(s) {few(repeated)} appear more than once; each sample has one profile"
        )
    text = [c for c in matrix.columns if matrix[c].dtype.kind not in "fiu"]
    if text:
        try:
            matrix[text] = matrix[text].apply(pd.to_numeric)
        except (ValueError, TypeError) as exc:
            raise HistoError(
                f"{path}: non-numeric values for {few(text)}; expected expression values only"
            ) from exc
    return matrix.astype(float), orientation


def _to_linear(values: pd.DataFrame, scale: str) -> pd.DataFrame:
    if scale == "log2p1":
        return np.power(2.0, values) - 1.0
    if scale == "log2p001":
        return (np.power(2.0, values) - 0.001).clip(lower=0.0)
    return values


def convert(values: pd.DataFrame, source_scale: str, scale: str, where: str) -> pd.DataFrame:
    """Values from `source_scale` to `scale` (`linear` or `log2p1`); tiny float round-off is clipped."""
    if source_scale == scale:
        return values
    linear = _to_linear(values, source_scale).mask(lambda v: (v < 0) & (v > -1e-6), 0.0)
    if scale == "linear":
        return linear
    negative = linear.lt(0).any(axis=1)
    if negative.any():
        raise HistoError(
            f"{where}: negative expression for {few(negative[negative].index)}, so the values cannot be "
            f"{'log2(x+1)-transformed' if source_scale == 'linear' else 'converted'}; "
            "check expression.input_scale"
        )
    return np.log2(linear + 1.0)


def read_star(path: Path, config: ExpressionConfig) -> pd.Series:
    """One GDC STAR file as gene -> value (linear), per config.value / genes / gene_types."""
    try:
        frame = pd.read_csv(path, sep="\t", comment="#", dtype={c: str for c in STAR_COLUMNS})
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise HistoError(f"{path}: not a readable STAR gene counts file: {exc}") from exc
    needed = [config.genes, config.value] + (["gene_type"] if config.gene_types else [])
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise HistoError(
            f"{path}: column(s) {missing} not found (it has {few(frame.columns, 10)}); GDC's "
            "augmented_star_gene_counts.tsv has gene_id, gene_name, gene_type, unstranded, ..., "
            "tpm_unstranded"
        )
    frame = frame[~frame["gene_id"].astype(str).str.startswith("N_")] if "gene_id" in frame else frame
    if config.gene_types:
        frame = frame[frame["gene_type"].isin(config.gene_types)]
    values = pd.to_numeric(frame[config.value], errors="coerce")
    if values.isna().any():
        raise HistoError(
            f"{path}: {int(values.isna().sum())} non-numeric value(s) in column {config.value!r}"
        )
    return values.groupby(frame[config.genes].to_numpy()).sum()


def _star_profiles(
    config: ExpressionConfig, sheets: dict[str, SheetEntry], notes: list[FileNote]
) -> list[Profile]:
    root = Path(config.path)
    if not root.is_dir():
        raise HistoError(f"expression.path: {root} is not a folder; format star reads a folder of STAR files")
    files = sorted(p for p in root.rglob("*.tsv") if p.is_file() and not p.name.startswith("."))
    files = [p for p in files if "star" in p.name.lower() or p.name in sheets or _is_barcode(p.name)]
    if not files:
        raise HistoError(f"expression.path: no STAR gene counts file (*.tsv) below {root}")
    profiles = []
    for path in files:
        entry = sheets.get(path.name)
        if entry is not None:
            barcodes = [b for b in map(parse_barcode, entry.sample_ids) if b is not None]
            if len(barcodes) != 1:
                notes.append(
                    FileNote(
                        str(path),
                        f"{entry.where} lists sample(s) {entry.sample_ids!r}; "
                        "expected one TCGA sample barcode",
                    )
                )
                continue
            profiles.append(
                Profile(str(path), barcodes[0], entry.where, tie_break=entry.file_id or path.name)
            )
            continue
        barcode = parse_barcode(path.name)
        if barcode is None:
            notes.append(
                FileNote(
                    str(path),
                    "whose file is unknown: not in a sample sheet and no barcode in its "
                    "name; add the GDC sample sheet to sample_sheets",
                )
            )
            continue
        profiles.append(Profile(str(path), barcode, "file name", tie_break=path.name))
    return profiles


def choose(profiles: list[Profile], sample_types: list[str], notes: list[FileNote]) -> dict[str, Profile]:
    """One profile per case (module docstring); every other profile gets a note saying why not."""
    by_case: dict[str, list[Profile]] = {}
    for profile in profiles:
        by_case.setdefault(profile.barcode.case_id, []).append(profile)
    chosen: dict[str, Profile] = {}
    for case, options in by_case.items():
        usable = []
        for profile in options:
            code = profile.barcode.sample_type
            if code is not None and code not in sample_types:
                notes.append(
                    FileNote(
                        profile.key,
                        f"sample type {code} ({sample_type_name(code)}) is not in "
                        f"sample_types {sample_types}",
                        case,
                    )
                )
            else:
                usable.append(profile)
        if not usable:
            continue

        def rank(p: Profile) -> tuple[Any, ...]:
            code = p.barcode.sample_type
            return (
                -sample_types.index(code) if code in sample_types else -len(sample_types),
                aliquot_preference(p.barcode, p.tie_break),
            )

        best = max(usable, key=rank)
        chosen[case] = best
        for other in usable:
            if other is not best:
                notes.append(
                    FileNote(
                        other.key,
                        f"another profile of this case was preferred: {best.barcode.text} "
                        "(sample type order, then the Firehose replicate rule)",
                        case,
                    )
                )
    return chosen


def read_expression(
    config: ExpressionConfig, sheets: dict[str, SheetEntry], sample_types: list[str]
) -> Expression:
    """The chosen profile of every case, in config.scale, with a note for every profile not used."""
    notes: list[FileNote] = []
    if config.format == "xena":
        path = Path(config.path)
        matrix, orientation = _read_xena(path)
        profiles = []
        for key in matrix.index:
            barcode = parse_barcode(key)
            if barcode is None:
                notes.append(FileNote(f"{path.name}: {key}", "not a TCGA barcode"))
            else:
                profiles.append(Profile(key, barcode, "id in the matrix"))
        chosen = choose(profiles, sample_types, notes)
        table = matrix.loc[[p.key for p in chosen.values()]]
        source_scale = config.input_scale
        description: dict[str, Any] = {"format": "xena", "file": str(path), "orientation": orientation}
    else:
        profiles = _star_profiles(config, sheets, notes)
        chosen = choose(profiles, sample_types, notes)
        series = {p.key: read_star(Path(p.key), config) for p in chosen.values()}
        table = pd.DataFrame(series).T if series else pd.DataFrame()
        gaps = table.columns[table.isna().any()] if len(table) else []
        if len(gaps):
            raise HistoError(
                f"{config.path}: the STAR files do not list the same genes ({few(gaps)} missing from some); "
                "they must come from one GDC data release"
            )
        source_scale = "linear"
        description = {
            "format": "star",
            "folder": str(config.path),
            "value": config.value,
            "genes": config.genes,
            "gene_types": config.gene_types,
        }
    where = str(config.path)
    table = convert(table, source_scale, config.scale, where)
    table.index = pd.Index([case for case in chosen], name="case_id")
    description |= {
        "input_scale": source_scale,
        "scale": config.scale,
        "cases": len(table),
        "genes": int(table.shape[1]),
    }
    unchecked = sum(1 for p in chosen.values() if p.barcode.sample_type is None)
    if unchecked:
        description["note"] = (
            f"{unchecked} profile(s) are named by case, not sample (TCGA-XX-XXXX): their "
            "sample type could not be checked against sample_types"
        )
    return Expression(table=table, chosen=chosen, notes=notes, description=description)
