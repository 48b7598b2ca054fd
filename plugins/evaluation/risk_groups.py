"""Risk groups from predicted risk and the log-rank test between them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

GroupSplit = Literal["median", "tertiles"]
GROUP_NAMES: dict[str, tuple[str, ...]] = {
    "median": ("low risk", "high risk"),
    "tertiles": ("low risk", "intermediate risk", "high risk"),
}


@dataclass(frozen=True)
class LogRank:
    groups: np.ndarray  # [n] group index, 0 = lowest risk
    thresholds: np.ndarray  # risk cut points, from the training set when given
    names: tuple[str, ...]
    chi2: float
    p_value: float  # NaN when fewer than two groups are populated


def risk_thresholds(reference_risk: np.ndarray, split: GroupSplit = "median") -> np.ndarray:
    """Cut points of the reference (training) risk: its median, or its tertiles."""
    quantiles = [0.5] if split == "median" else [1 / 3, 2 / 3]
    return np.quantile(np.asarray(reference_risk, dtype=np.float64), quantiles)


def assign_groups(risk: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Group index per patient: risk above the k-th threshold puts it in group k + 1."""
    return np.searchsorted(np.asarray(thresholds), np.asarray(risk, dtype=np.float64), side="right")


def risk_group_logrank(
    risk: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    *,
    train_risk: np.ndarray | None = None,
    split: GroupSplit = "median",
) -> LogRank:
    """Split patients by the training set's risk quantiles (else the evaluated set's) and compare their
    survival with scikit-survival's log-rank test (`compare_survival`)."""
    from sksurv.compare import compare_survival
    from sksurv.util import Surv

    risk = np.asarray(risk, dtype=np.float64).reshape(-1)
    thresholds = risk_thresholds(risk if train_risk is None else train_risk, split)
    groups = assign_groups(risk, thresholds)
    chi2, p_value = float("nan"), float("nan")
    if np.unique(groups).size >= 2 and np.asarray(event).astype(bool).any():
        y = Surv.from_arrays(event=np.asarray(event).astype(bool), time=np.asarray(time, dtype=np.float64))
        chi2, p_value = (float(v) for v in compare_survival(y, groups))
    return LogRank(groups, thresholds, GROUP_NAMES[split], chi2, p_value)
