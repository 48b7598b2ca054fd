"""Hyperparameter search by inner cross-validation on a fold's training rows, shared by the classical
models: each candidate is fitted on every inner split's fitting rows and scored on its held-out rows; the
best mean score wins (ties: the earlier candidate, i.e. the stronger regularisation); then the winner is
refitted on all training rows. The test fold never reaches this module."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from histo.interfaces import InnerSplit

NAN = float("nan")


def score(task: str, prediction: np.ndarray, y: np.ndarray) -> float:
    """The selection metric: AUC (binary, else macro one-vs-rest) or Harrell's C-index; NaN where
    undefined (a class or every event missing from the held-out rows)."""
    if task == "survival":
        from histo.plugins.tasks.metrics import harrell_c_index

        return harrell_c_index(prediction, y[:, 0], y[:, 1])
    from sklearn.metrics import roc_auc_score

    k = prediction.shape[1]
    if len(np.unique(y)) < k:
        return NAN
    if k == 2:
        return float(roc_auc_score(y, prediction[:, 1]))
    return float(roc_auc_score(y, prediction, multi_class="ovr", average="macro", labels=list(range(k))))


def pick(scores: np.ndarray) -> int:
    """Index of the best finite score; ties go to the first."""
    if not np.isfinite(scores).any():
        return 0
    return int(np.flatnonzero(scores >= np.nanmax(scores) - 1e-12)[0])


def grid_search(
    task: str,
    candidates: Sequence[dict[str, Any]],
    fit: Callable[[dict[str, Any], np.ndarray, np.ndarray], Any],
    predict: Callable[[Any, np.ndarray], np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    inner: Sequence[InnerSplit],
) -> tuple[Any, dict[str, Any]]:
    """(the winner refitted on all rows, a record of every candidate's inner scores)."""
    scores = np.full((len(candidates), len(inner)), NAN)
    if len(candidates) > 1:  # a single candidate needs no search
        for c, params in enumerate(candidates):
            for i, (fit_rows, held_rows) in enumerate(inner):
                model = quiet(fit, params, x[fit_rows], y[fit_rows])
                scores[c, i] = score(task, predict(model, x[held_rows]), y[held_rows])
    means = np.array([np.nanmean(s) if np.isfinite(s).any() else NAN for s in scores])
    best = pick(means)
    model = quiet(fit, candidates[best], x, y)
    record = {
        "chosen": dict(candidates[best]),
        "selected_on": f"inner {len(inner)}-fold CV ({'c_index' if task == 'survival' else 'auc'})",
        "inner_scores": [
            {"params": dict(p), "mean": _json_float(m), "folds": [_json_float(v) for v in s]}
            for p, m, s in zip(candidates, means, scores, strict=True)
        ],
    }
    return model, record


def quiet(function: Callable[..., Any], *args: Any) -> Any:
    """Run a fit without convergence warnings (expected at the weakest penalties of a grid)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args)


def _json_float(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def surv(y: np.ndarray) -> np.ndarray:
    """scikit-survival's structured target from (time, event) columns."""
    from sksurv.util import Surv

    return Surv.from_arrays(event=y[:, 1].astype(bool), time=y[:, 0].astype(np.float64))


def full_probabilities(estimator: Any, x: np.ndarray, num_outputs: int) -> np.ndarray:
    """predict_proba with a column for every class, 0 for a class the fit never saw."""
    partial = estimator.predict_proba(x)
    full = np.zeros((len(x), num_outputs))
    full[:, np.asarray(estimator.classes_, dtype=int)] = partial
    return full
