"""Overall survival per case from the clinical files a lab downloads, in one unit and one convention.

- GDC `clinical.tsv` (one row per case and treatment; columns possibly prefixed, `demographic.vital_status`):
  event = `vital_status` Dead; time = `days_to_death` for the dead, else `days_to_last_follow_up`.
  Across a case's rows the largest value of each counts (a later follow-up supersedes an earlier one).
  GDC writes `'--` for missing values.
- cBioPortal `data_clinical_patient.txt` (four `#` header lines): `OS_MONTHS`, and `OS_STATUS` as
  `1:DECEASED` / `0:LIVING` (or the older `DECEASED` / `LIVING`).
- Any table (format `columns`): patient, time and 0/1 event columns, e.g. SurvPath's `censorship`.
A case whose survival cannot be read is excluded with the reason; the others go on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from histo.errors import HistoError

from ..exclusions import Exclusion
from ..table import few, read_table, require_columns, shown
from .barcodes import parse_barcode
from .config import DAYS_PER_MONTH, ClinicalConfig

GDC_CASE = ("case_submitter_id", "submitter_id")
GDC_FIELDS = ("vital_status", "days_to_death", "days_to_last_follow_up")
CBIO_FIELDS = ("PATIENT_ID", "OS_MONTHS", "OS_STATUS")
MISSING = {
    "",
    "--",
    "'--",
    "NA",
    "N/A",
    "[Not Available]",
    "[Not Applicable]",
    "[Unknown]",
    "[Discrepancy]",
    "Not Reported",
    "Unknown",
}


@dataclass
class Survival:
    """Cases (index `case_id`) with `time` in `unit` and `event` (1 = death observed)."""

    file: Path
    format: str
    unit: str
    table: pd.DataFrame
    exclusions: list[Exclusion] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {
            "file": str(self.file),
            "format": self.format,
            "time_unit": self.unit,
            "cases": len(self.table),
            "events": int(self.table["event"].sum()),
            "excluded": len(self.exclusions),
            "notes": self.notes,
        }


def _column(frame: pd.DataFrame, names: tuple[str, ...]) -> str | None:
    """The column called one of `names`, or GDC's newer prefixed form (`demographic.vital_status`)."""
    for name in names:
        for column in frame.columns:
            if column == name or column.endswith(f".{name}"):
                return str(column)
    return None


def _numbers(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip()
    return pd.to_numeric(text.mask(text.isin(MISSING)), errors="coerce").astype(float)


def _read_cbioportal(path: Path) -> pd.DataFrame:
    """cBioPortal's tab-separated file after its `#` lines, indexed by file line number."""
    if not path.is_file():
        raise HistoError(f"{path}: no such file; check clinical.table in the recipe")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    skip = 0
    while skip < len(lines) and lines[skip].startswith("#"):
        skip += 1
    frame = pd.read_csv(path, sep="\t", skiprows=skip, dtype=str, keep_default_na=False)
    frame.index = pd.RangeIndex(skip + 2, skip + 2 + len(frame), name="row")
    return frame


def _detect(path: Path) -> str:
    head = path.read_text(encoding="utf-8", errors="replace")[:65536] if path.is_file() else ""
    lines = [line for line in head.splitlines() if not line.startswith("#")]
    header = lines[0].split("\t") if lines else []
    if all(name in header for name in CBIO_FIELDS):
        return "cbioportal"
    if any(h.endswith("vital_status") for h in header) and any(h.endswith("days_to_death") for h in header):
        return "gdc"
    raise HistoError(
        f"{path}: neither a GDC clinical.tsv (vital_status, days_to_death, days_to_last_follow_up) nor a "
        f"cBioPortal patient file ({', '.join(CBIO_FIELDS)}); its first columns are {few(header, 8)}. "
        "Set clinical.format: columns with patient_column, time_column and event_column."
    )


def read_survival(config: ClinicalConfig, unit: str = "months") -> Survival:
    """Survival per case in `unit` (days or months); see the module docstring for each format."""
    path = Path(config.table)
    if not path.is_file():
        raise HistoError(
            f"{path}: no such file; check clinical.table (relative paths are resolved from the directory "
            "histo runs in)"
        )
    fmt = _detect(path) if config.format == "auto" else config.format
    if fmt == "gdc":
        frame = read_table(path, [*GDC_CASE, "vital_status", "demographic.vital_status"])
        case = _column(frame, GDC_CASE)
        cols = {name: _column(frame, (name,)) for name in GDC_FIELDS}
        absent = [n for n, c in ({"case_submitter_id": case} | cols).items() if c is None]
        if absent:
            raise HistoError(
                f"{path}: GDC clinical file without column(s) {absent}; it has {few(frame.columns, 10)}"
            )
        status = frame[str(cols["vital_status"])].astype("string").str.strip().str.lower()
        event = pd.Series(
            np.where(status == "dead", 1.0, np.where(status == "alive", 0.0, np.nan)), index=frame.index
        )
        death, follow = (
            _numbers(frame[str(cols["days_to_death"])]),
            _numbers(frame[str(cols["days_to_last_follow_up"])]),
        )
        time = pd.Series(np.where(event == 1, death, follow), index=frame.index)
        source_unit, cases = "days", frame[str(case)]
        reason_time = np.where(event == 1, "days_to_death", "days_to_last_follow_up")
        grouped = pd.DataFrame({"case": cases, "event": event, "death": death, "follow": follow})
    elif fmt == "cbioportal":
        frame = _read_cbioportal(path)
        require_columns(frame, path, {n: n for n in CBIO_FIELDS})
        status = frame["OS_STATUS"].astype(str).str.strip().str.upper()
        word = status.str.split(":").str[-1]
        event = pd.Series(
            np.where(word == "DECEASED", 1.0, np.where(word == "LIVING", 0.0, np.nan)), index=frame.index
        )
        time, source_unit, cases = _numbers(frame["OS_MONTHS"]), "months", frame["PATIENT_ID"]
        reason_time = np.full(len(frame), "OS_MONTHS")
        grouped = None
    else:
        assert config.patient_column and config.time_column and config.event_column
        frame = read_table(path, [config.patient_column])
        require_columns(
            frame,
            path,
            {
                "patient_column": config.patient_column,
                "time_column": config.time_column,
                "event_column": config.event_column,
            },
        )
        raw = frame[config.event_column].astype("string").str.strip().str.lower()
        one, zero = raw.isin({"1", "1.0", "true"}), raw.isin({"0", "0.0", "false"})
        bad = (raw.notna() & ~one & ~zero).fillna(False).astype(bool)
        if bad.any():
            found = few(f"row {r}: {v!r}" for r, v in frame.loc[bad, config.event_column].items())
            raise HistoError(
                f"{path}: event_column {config.event_column!r} must hold 0/1 (or true/false); found {found}. "
                "For a vital status column (Dead/Alive) use the GDC format, or convert it."
            )
        event = pd.Series(np.where(one, 1.0, np.where(zero, 0.0, np.nan)), index=frame.index)
        if config.event_is == "censored":
            event = 1.0 - event
        time, source_unit, cases = (
            _numbers(frame[config.time_column]),
            config.time_unit,
            frame[config.patient_column],
        )
        reason_time = np.full(len(frame), config.time_column)
        grouped = None
    missing_keep = [c for c in config.keep_columns if c not in frame.columns]
    if missing_keep:
        raise HistoError(
            f"{path}: clinical.keep_columns {missing_keep} not found; it has {few(frame.columns, 12)}"
        )

    factor = 1.0 if source_unit == unit else (1 / DAYS_PER_MONTH if unit == "months" else DAYS_PER_MONTH)
    exclusions: list[Exclusion] = []
    records: dict[str, dict[str, Any]] = {}
    rows_of: dict[str, list[int]] = {}
    for row, value in cases.items():
        barcode = parse_barcode(str(value)) if isinstance(value, str) else None
        if barcode is None:
            exclusions.append(
                Exclusion(
                    str(path), f"{shown(value)} is not a TCGA case barcode (TCGA-XX-XXXX)", rows=(int(row),)
                )
            )
            continue
        rows_of.setdefault(barcode.case_id, []).append(int(row))
    for case, rows in rows_of.items():
        if grouped is not None:  # GDC: one row per treatment; a death on any row counts, latest days win
            part = grouped.loc[rows]
            dead = (part["event"] == 1).any()
            alive = (part["event"] == 0).any()
            ev = 1.0 if dead else 0.0 if alive else np.nan
            t = part["death"].max() if dead else part["follow"].max()
            field_name = "days_to_death" if dead else "days_to_last_follow_up"
        else:
            evs, ts = event.loc[rows].dropna().unique(), time.loc[rows].dropna().unique()
            if len(evs) > 1 or len(ts) > 1:
                shown_rows = ", ".join(f"row {r}: {shown(time[r])}/{shown(event[r])}" for r in rows[:4])
                raise HistoError(
                    f"{path}: the rows of case {case} disagree on survival ({shown_rows}); fix them"
                )
            ev = evs[0] if len(evs) else np.nan
            t = ts[0] if len(ts) else np.nan
            field_name = str(reason_time[0])
        if np.isnan(ev):
            exclusions.append(
                Exclusion(str(path), "vital status / event is missing or not recognised", case, tuple(rows))
            )
        elif np.isnan(t):
            exclusions.append(
                Exclusion(str(path), f"survival time ({field_name}) is missing", case, tuple(rows))
            )
        elif t < 0:
            exclusions.append(
                Exclusion(str(path), f"survival time ({field_name}) is negative ({t:g})", case, tuple(rows))
            )
        else:
            record: dict[str, Any] = {"time": float(t) * factor, "event": int(ev)}
            for column in config.keep_columns:
                values = frame.loc[rows, column].dropna()
                record[column] = values.iloc[0] if len(values) else None
            records[case] = record
    if not records:
        raise HistoError(f"{path}: no case has a usable survival (first reasons: {few(exclusions, 3)})")
    table = pd.DataFrame.from_dict(records, orient="index")
    table.index.name = "case_id"
    notes = [
        f"{fmt} clinical file, time converted from {source_unit} to {unit}"
        if factor != 1.0
        else f"{fmt} clinical file, time in {unit}"
    ]
    return Survival(path, fmt, unit, table, exclusions, notes)
