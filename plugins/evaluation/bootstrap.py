"""Pooled out-of-fold metrics with bootstrap confidence intervals (patients resampled with replacement).

Pooling: survival risks are compared across folds on `risk_centred` (each fold's risk minus its training
median, so one fold's model does not outrank another's by scale alone); classification pools the
probabilities. The C-index is Harrell's, computed here in vectorised form (identical to scikit-survival's
`concordance_index_censored`, tested) because 1,000 resamples of it must take a second, not a minute.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

LEVEL = 0.95
NAN = float("nan")


def harrell(risk: np.ndarray, time: np.ndarray, event: np.ndarray, block: int = 1024) -> float:
    """Harrell's C: pairs (i, j) with an event at i before j's time (or at j's censoring time) are
    comparable; concordant when i's risk is higher, half for tied risks. NaN without comparable pairs.
    Rows are taken `block` at a time, so memory stays O(block x n) on large cohorts."""
    risk, time, event = (np.asarray(a, dtype=np.float64) for a in (risk, time, event))
    total = concordant = 0.0
    for start in range(0, len(risk), block):
        r, t, e = risk[start : start + block], time[start : start + block], event[start : start + block]
        earlier = t[:, None] < time[None, :]
        same_time_censored = (t[:, None] == time[None, :]) & (event[None, :] == 0)
        comparable = (e[:, None] == 1) & (earlier | same_time_censored)
        diff = r[:, None] - risk[None, :]
        total += comparable.sum()
        concordant += (comparable & (diff > 0)).sum() + 0.5 * (comparable & (diff == 0)).sum()
    return float(concordant / total) if total else NAN


def binary_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Mann-Whitney AUC with mid-ranks for ties (equal to scikit-learn's roc_auc_score, tested)."""
    from scipy.stats import rankdata

    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return NAN
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auc(probabilities: np.ndarray, target: np.ndarray) -> float:
    """Binary AUC (second class) or macro one-vs-rest AUC, as the tasks report it; NaN when a class is
    absent."""
    k = probabilities.shape[1]
    if len(np.unique(target)) < k:
        return NAN
    if k == 2:
        return binary_auc(probabilities[:, 1], target == 1)
    return float(np.mean([binary_auc(probabilities[:, c], target == c) for c in range(k)]))


def metric_function(predictions: pd.DataFrame) -> tuple[str, Callable[[np.ndarray], float]] | None:
    """(metric name, f(row indices) -> pooled metric) for a predictions.csv, or None if unrecognised."""
    if "time" in predictions and "event" in predictions and "risk" in predictions:
        risk = predictions["risk_centred" if "risk_centred" in predictions else "risk"].to_numpy(float)
        time, event = predictions["time"].to_numpy(float), predictions["event"].to_numpy(float)
        return "c_index", lambda rows: harrell(risk[rows], time[rows], event[rows])
    prob_columns = [c for c in predictions.columns if c.startswith("prob_")]
    if prob_columns and "target" in predictions:
        classes = [c[len("prob_") :] for c in prob_columns]
        probabilities = predictions[prob_columns].to_numpy(float)
        index = {c: i for i, c in enumerate(classes)}
        target = np.array([index.get(str(t), -1) for t in predictions["target"]])
        if (target < 0).any():
            return None
        return "auc", lambda rows: auc(probabilities[rows], target[rows])
    return None


def resample_rows(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """[n_resamples, n] row indices drawn with replacement (seeded: the same draws for every model)."""
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return NAN, NAN
    alpha = (1 - level) / 2
    return float(np.quantile(finite, alpha)), float(np.quantile(finite, 1 - alpha))


def pooled_summary(predictions: pd.DataFrame, n_resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """{metric: {estimate, low, high, level, resamples, patients}} of the pooled out-of-fold predictions."""
    found = metric_function(predictions)
    if found is None:
        return {}
    name, function = found
    n = len(predictions)
    estimate = function(np.arange(n))
    entry: dict[str, Any] = {"estimate": _clean(estimate), "patients": n, "resamples": n_resamples}
    if n_resamples > 0:
        values = np.array([function(rows) for rows in resample_rows(n, n_resamples, seed)])
        low, high = interval(values)
        entry.update(low=_clean(low), high=_clean(high), level=LEVEL)
    return {name: entry}


def _clean(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
