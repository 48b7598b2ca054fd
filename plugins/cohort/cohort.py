"""The cohort table: one row per slide (or per patient) in, one row per patient out.

Rules (docs/cohorts.md lists them for users): problems that make the table ambiguous are errors
(duplicate slide ids, a slide row without a patient id, a patient whose rows disagree on label, time
or event, an event value that is not 0/1); a patient whose own target is unusable (missing or
negative survival time, missing event or label) is excluded and recorded, and the run goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from histo.errors import HistoError
from histo.recipe.refs import InputPath

from .exclusions import Exclusion
from .table import few, read_table, require_columns, rows_text, shown

TRUE_WORDS = {"1", "1.0", "true", "yes"}
FALSE_WORDS = {"0", "0.0", "false", "no"}


class CohortConfig(BaseModel):
    """Where the cohort table is and which of its columns mean what."""

    model_config = ConfigDict(extra="forbid")

    table: InputPath = Field(
        description="CSV or TSV with one row per slide (or per patient); delimiter from the extension "
        "(.csv, .tsv, .tab), else sniffed."
    )
    patient_column: str = Field(default="patient_id", description="Column with the patient (case) id.")
    slide_column: str | None = Field(
        default="slide_id",
        description="Column with the slide id (file name with or without extension); null for a table "
        "with one row per patient and no slides. A blank cell lists the patient without that slide.",
    )
    label_column: str | None = Field(
        default=None,
        description="Column with a class label (diagnosis, grade); patients without one are excluded.",
    )
    time_column: str | None = Field(
        default=None, description="Column with the follow-up time; set together with event_column."
    )
    event_column: str | None = Field(
        default=None, description="Column with the event indicator (0/1 or true/false); see event_is."
    )
    event_is: Literal["event", "censored"] = Field(
        default="event",
        description="What a 1 in event_column means: 'event' (death/progression observed) or 'censored' "
        "(TCGA/SurvPath `censorship`, 1 = alive at last follow-up), which is inverted.",
    )
    time_unit: str = Field(
        default="months", description="Label of the time unit, for reports and plots only."
    )

    @model_validator(mode="after")
    def _consistent(self) -> CohortConfig:
        if (self.time_column is None) != (self.event_column is None):
            raise ValueError("time_column and event_column go together: set both for survival, or neither")
        named = [
            c
            for c in (
                self.patient_column,
                self.slide_column,
                self.label_column,
                self.time_column,
                self.event_column,
            )
            if c is not None
        ]
        repeated = sorted({c for c in named if named.count(c) > 1})
        if repeated:
            raise ValueError(f"column {repeated[0]!r} is given for two different roles")
        return self

    @property
    def survival(self) -> bool:
        return self.time_column is not None


@dataclass
class Cohort:
    """Patients (index `patient_id`) with every column of the table but the slide column.

    With survival configured, `time` (float, >= 0) and `event` (int, 1 = event observed) are added.
    Columns other than label/time/event take the first non-empty value among a patient's rows.
    """

    file: Path
    patients: pd.DataFrame
    slides: dict[str, list[str]]
    exclusions: list[Exclusion] = field(default_factory=list)
    label_column: str | None = None
    time_unit: str = "months"
    has_slide_column: bool = True

    @property
    def ids(self) -> list[str]:
        return self.patients.index.tolist()

    @property
    def survival(self) -> bool:
        return "time" in self.patients.columns and "event" in self.patients.columns


def _parse_events(raw: pd.Series, path: Path, column: str) -> pd.Series:
    """0/1 (or true/false) as float with NaN for blanks; any other value is an error."""
    text = raw.astype("string").str.strip().str.lower()
    ones, zeros = text.isin(TRUE_WORDS), text.isin(FALSE_WORDS)
    bad = ~(ones | zeros) & text.notna()
    bad = bad.fillna(False).astype(bool)
    if bad.any():
        shown = few(f"row {r}: {v!r}" for r, v in raw[bad].items())
        raise HistoError(
            f"{path}: event column {column!r} must hold 0/1 (or true/false); found {shown}. "
            "Convert the column (e.g. vital status Dead -> 1, Alive -> 0) and set event_is."
        )
    return pd.Series(
        np.where(ones.fillna(False), 1.0, np.where(zeros.fillna(False), 0.0, np.nan)), index=raw.index
    )


def _check_consistent(frame: pd.DataFrame, patients: pd.Series, column: str, path: Path) -> None:
    """A patient's rows must agree on a target column (blanks are ignored)."""
    values = frame[column]
    present = values.notna()
    keyed = values.round(9) if values.dtype.kind == "f" else values.astype("string").str.strip()
    distinct = keyed[present].groupby(patients[present], sort=False).nunique()
    conflicting = distinct[distinct > 1].index.tolist()
    if conflicting:
        details = []
        for patient in conflicting[:3]:
            rows = patients.index[(patients == patient) & present]
            pairs = ", ".join(f"row {r}: {shown(frame.at[r, column])}" for r in rows)
            details.append(f"patient {patient} ({pairs})")
        more = f" and {len(conflicting) - 3} more patients" if len(conflicting) > 3 else ""
        raise HistoError(
            f"{path}: the rows of a patient disagree on {column!r}: {'; '.join(details)}{more}. "
            "A patient has one value; fix the rows so they agree."
        )


def _check_rows(frame: pd.DataFrame, config: CohortConfig, path: Path) -> None:
    patient, slide = config.patient_column, config.slide_column
    no_patient = frame.index[frame[patient].isna()].tolist()
    if no_patient:
        raise HistoError(
            f"{path}: {rows_text(no_patient)} have no {patient!r} (patient id). Every row "
            "must name its patient; fill it in or delete the row."
        )
    if slide is None:
        counts = frame[patient].value_counts()
        repeated = counts[counts > 1].index.tolist()
        if repeated:
            rows = frame.index[frame[patient] == repeated[0]].tolist()
            raise HistoError(
                f"{path}: patient {repeated[0]} appears on {rows_text(rows)} ({len(repeated)} patient(s) "
                "repeated). Without slide_column each patient has one row; set slide_column or remove "
                "the duplicates."
            )
        return
    slides = frame[slide]
    duplicated = slides.notna() & slides.duplicated(keep=False)
    if duplicated.any():
        first = slides[duplicated].iloc[0]
        rows = slides.index[slides == first].tolist()
        others = slides[duplicated].nunique() - 1
        raise HistoError(
            f"{path}: slide {first!r} is listed on {rows_text(rows)}"
            + (f" ({others} more slide ids are repeated)" if others else "")
            + ". Each slide belongs to one row; remove the duplicate rows."
        )


def _quote(raw: object) -> str:
    return "empty" if pd.isna(raw) else f"{raw!r}"


def load_cohort(config: CohortConfig) -> Cohort:
    """Read and check the cohort table; see the module docstring for what is an error and what is excluded."""
    path = Path(config.table)
    text_columns = [config.patient_column, config.slide_column]
    if config.label_column is not None:
        text_columns.append(config.label_column)
    frame = read_table(path, [c for c in text_columns if c is not None])
    require_columns(
        frame,
        path,
        {
            "patient_column": config.patient_column,
            "label_column": config.label_column,
            "time_column": config.time_column,
            "event_column": config.event_column,
        },
    )
    if config.slide_column is not None and config.slide_column not in frame.columns:
        raise HistoError(
            f"{path}: no slide column {config.slide_column!r} (slide_column; the file has "
            f"{few(frame.columns, 12)}). A cohort without slides (one row per patient, for omics-only "
            "models) needs `slide_column: null`; otherwise set slide_column to the column naming each slide."
        )
    if config.survival:
        for name, source in (("time", config.time_column), ("event", config.event_column)):
            if name in frame.columns and name != source:
                raise HistoError(
                    f"{path}: the table has a column {name!r} that is not the configured {name}_column "
                    f"({source!r}); the cohort writes the normalised {name} there. Rename that column "
                    f"or set {name}_column: {name}."
                )
    _check_rows(frame, config, path)
    patients = frame[config.patient_column].astype(str)

    targets: list[str] = []
    raw_time = None
    if config.survival:
        assert config.time_column is not None and config.event_column is not None
        raw_time = frame[config.time_column]
        frame["time"] = pd.to_numeric(raw_time, errors="coerce").astype(float)
        event = _parse_events(frame[config.event_column], path, config.event_column)
        frame["event"] = 1.0 - event if config.event_is == "censored" else event
        targets += ["time", "event"]
    if config.label_column is not None:
        targets.append(config.label_column)
    for column in targets:
        _check_consistent(frame, patients, column, path)

    exclusions: list[Exclusion] = []
    dropped: set[str] = set()
    rows_of = {p: idx.tolist() for p, idx in frame.groupby(patients, sort=False).groups.items()}

    def exclude(patient: str, reason: str) -> None:
        if patient not in dropped:
            dropped.add(patient)
            exclusions.append(
                Exclusion(file=str(path), reason=reason, patient=patient, rows=tuple(rows_of[patient]))
            )

    collapsed = frame.drop(columns=[c for c in (config.slide_column,) if c is not None])
    collapsed = collapsed.groupby(patients, sort=False).first()
    if config.survival:
        assert raw_time is not None
        for patient, value in collapsed["time"].items():
            if np.isnan(value):
                raw = raw_time.loc[rows_of[patient]].dropna()
                found = f"not a number ({shown(raw.iloc[0])})" if len(raw) else "empty"
                exclude(patient, f"survival time ({config.time_column}) is {found}")
            elif not np.isfinite(value) or value < 0:
                exclude(
                    patient, f"survival time ({config.time_column}) is {value:g}; it must be >= 0 and finite"
                )
        for patient in collapsed.index[collapsed["event"].isna()]:
            exclude(patient, f"event ({config.event_column}) is empty")
    if config.label_column is not None:
        for patient in collapsed.index[collapsed[config.label_column].isna()]:
            exclude(patient, f"label ({config.label_column}) is empty")

    exclusions.sort(key=lambda e: e.rows)  # file order, as the user reads the table
    kept = collapsed.loc[[p for p in collapsed.index if p not in dropped]].copy()
    if len(kept) == 0:
        raise HistoError(
            f"{path}: every patient was excluded (first reasons: "
            f"{few((str(e) for e in exclusions), 3)}); check the configured columns"
        )
    kept = kept.drop(columns=[config.patient_column], errors="ignore")
    kept.index = pd.Index(kept.index.astype(str), name="patient_id")
    if config.survival:
        kept["time"] = kept["time"].astype(float)
        kept["event"] = kept["event"].astype(int)

    slides: dict[str, list[str]] = {p: [] for p in kept.index}
    if config.slide_column is not None:
        for patient, slide in zip(patients, frame[config.slide_column], strict=True):
            if patient in slides and not pd.isna(slide):
                slides[patient].append(str(slide))
    return Cohort(
        file=path,
        patients=kept,
        slides=slides,
        exclusions=exclusions,
        label_column=config.label_column,
        time_unit=config.time_unit,
        has_slide_column=config.slide_column is not None,
    )
