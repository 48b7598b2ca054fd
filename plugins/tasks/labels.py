"""Checks on the cohort's label table shared by the tasks: columns present, rows usable."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from histo.errors import HistoError


def require_columns(labels: pd.DataFrame, columns: Sequence[str], task: str, option: str) -> None:
    """A missing column is a recipe error: name it, the columns that exist, and the option to change."""
    missing = [c for c in columns if c not in labels.columns]
    if missing:
        available = ", ".join(map(str, labels.columns)) or "none"
        raise HistoError(
            f"{task} task: column(s) {', '.join(map(repr, missing))} not in the cohort's label table "
            f"(columns: {available}); set `{option}` to one of them or add the column to the cohort CSV"
        )


def require_usable(reasons: pd.Series, task: str) -> None:
    """`encode`/`fit` get only usable rows; anything else is a caller bug worth a precise message."""
    bad = reasons[reasons != ""]
    if len(bad):
        shown = "; ".join(f"{pid}: {why}" for pid, why in bad.head(5).items())
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise HistoError(
            f"{task} task: {len(bad)} patient(s) have no usable label: {shown}{more}. "
            "Drop them with task.usable(labels) before fitting or encoding."
        )
