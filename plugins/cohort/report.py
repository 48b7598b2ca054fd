"""What a cohort holds and lacks, per modality, written next to a run so a user can audit it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from histo.io import write_json_atomic

from .cohort import Cohort
from .omics import OmicsTable
from .table import slide_key


def modalities(
    cohort: Cohort, omics: OmicsTable | None = None, slides_available: set[str] | None = None
) -> pd.DataFrame:
    """Per patient: has_slides, and has_omics / has_features when that modality is given.

    A slide counts as available when its id, or its id without a slide extension (`X.svs` -> `X`),
    is in `slides_available` (feature files are usually named by the slide's stem).
    """
    table = pd.DataFrame(index=cohort.patients.index)
    table["has_slides"] = [bool(cohort.slides.get(p)) for p in table.index]
    if omics is not None:
        table["has_omics"] = table.index.isin(omics.data.index)
    if slides_available is not None:
        keys = {slide_key(s) for s in slides_available}
        table["has_features"] = [
            any(slide_key(s) in keys for s in cohort.slides.get(p, [])) for p in table.index
        ]
    return table


def _missing_features(cohort: Cohort, slides_available: set[str]) -> list[str]:
    keys = {slide_key(s) for s in slides_available}
    return sorted(s for slides in cohort.slides.values() for s in slides if slide_key(s) not in keys)


def cohort_report(
    cohort: Cohort, omics: OmicsTable | None = None, slides_available: set[str] | None = None
) -> dict[str, Any]:
    """Counts, classes/events, who lacks which modality, and every exclusion with its reason."""
    patients = cohort.patients
    table = modalities(cohort, omics, slides_available)
    checked = [c for c in table.columns if c != "has_slides" or cohort.has_slide_column]
    report: dict[str, Any] = {
        "cohort": {
            "file": str(cohort.file),
            "patients": len(patients),
            "slides": sum(len(s) for s in cohort.slides.values()),
            "patients_with_several_slides": sum(len(s) > 1 for s in cohort.slides.values()),
        },
        "label": None,
        "survival": None,
        "modalities": {
            "complete": int(table[checked].all(axis=1).sum()) if checked else len(table),
            "no_slides": sorted(table.index[~table["has_slides"]]) if cohort.has_slide_column else None,
        },
        "omics": None,
        "exclusions": [e.to_dict() for e in cohort.exclusions],
    }
    if cohort.label_column is not None:
        counts = patients[cohort.label_column].astype(str).value_counts().sort_index()
        report["label"] = {
            "column": cohort.label_column,
            "classes": {str(k): int(v) for k, v in counts.items()},
        }
    if cohort.survival:
        time = patients["time"].to_numpy(dtype=float)
        report["survival"] = {
            "time_unit": cohort.time_unit,
            "events": int(patients["event"].sum()),
            "censored": int((patients["event"] == 0).sum()),
            "time_min": float(np.min(time)),
            "time_median": float(np.median(time)),
            "time_max": float(np.max(time)),
        }
    if omics is not None:
        report["modalities"]["no_omics"] = sorted(table.index[~table["has_omics"]])
        report["modalities"]["omics_not_in_cohort"] = sorted(set(omics.data.index) - set(patients.index))
        report["omics"] = {
            "file": str(omics.file),
            "patients": len(omics.data),
            "genes": omics.data.shape[1],
            "unused_genes": omics.unused_genes,
            "dropped_genes": list(omics.dropped_genes),
            "groups": {name: r.to_dict() for name, r in omics.reports.items()},
        }
        report["exclusions"] += [e.to_dict() for e in omics.exclusions]
    if slides_available is not None:
        report["modalities"]["no_features"] = sorted(table.index[~table["has_features"]])
        report["modalities"]["slides_without_features"] = _missing_features(cohort, slides_available)
    return report


def write_cohort_report(report: dict[str, Any], path: Path) -> Path:
    """Write the report as JSON, atomically (a killed run leaves the old file or none)."""
    write_json_atomic(path, report)
    return Path(path)
