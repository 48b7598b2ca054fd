"""One outer fold of a classical model: design matrices fitted on the training rows, inner CV splits of
those rows only, the model's search and refit, then test predictions and the task's metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from histo.errors import HistoError
from histo.interfaces import InnerSplit

from .design import fold_design


@dataclass
class FoldResult:
    predictions: pd.DataFrame
    metrics: dict[str, float]
    notes: list[str]
    selection: dict[str, Any]
    columns: list[str]
    dropped: list[str]
    train_median_risk: float | None


def inner_splits(strata: np.ndarray, folds: int, seed: int) -> list[InnerSplit]:
    """Stratified inner folds of the training rows (by class or by event), as row indices. A class with
    fewer training patients than `folds` lowers the number of inner folds to its count (at least 2), so
    every held-out part holds every class."""
    from sklearn.model_selection import StratifiedKFold

    values, counts = np.unique(strata, return_counts=True)
    if counts.min() < 2:
        raise HistoError(
            f"inner CV: class or event stratum {str(values[counts.argmin()])!r} has {counts.min()} training "
            "patient(s); inner cross-validation needs at least 2. Use fewer outer folds or merge rare classes"
        )
    folds = min(folds, int(counts.min()))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [(a, b) for a, b in splitter.split(np.zeros(len(strata)), strata)]


def fit_fold(
    model: Any,
    task: Any,
    kind: str,
    labels: pd.DataFrame,
    fit_ids: list[str],
    test_ids: list[str],
    fold: int,
    *,
    omics: Any,
    preprocess: Any,
    pooled: pd.DataFrame | None,
    inner_folds: int,
    inner_seed: int,
    seed: int,
) -> FoldResult:
    from histo.plugins.training.outputs import prediction_frame

    task.fit(labels.loc[fit_ids])
    design = fold_design({"fit": fit_ids, "test": test_ids}, fit_ids, omics, preprocess, pooled)
    fit_targets, test_targets = task.encode(labels.loc[fit_ids]), task.encode(labels.loc[test_ids])
    if kind == "survival":
        y = fit_targets[:, 1:3]
        strata = y[:, 1].astype(int)
    else:
        y = fit_targets
        strata = y
    inner = inner_splits(strata, inner_folds, inner_seed)
    lowered = (
        [f"inner CV used {len(inner)} folds, not {inner_folds}: a class or event stratum has only "
         f"{len(inner)} training patients"]
        if len(inner) < inner_folds else []
    )  # fmt: skip
    selection = model.fit(design.x["fit"], y, inner, num_outputs=task.num_outputs, seed=seed)
    test_out = np.asarray(model.predict(design.x["test"]), dtype=np.float64)
    notes: list[str] = list(lowered)
    median = None
    if kind == "survival":
        fit_risk = np.asarray(model.predict(design.x["fit"]), dtype=np.float64)
        metrics, more = _survival_metrics(model, task, design.x["test"], test_out, test_targets, fit_risk, y)
        notes += more
        logits = test_out.reshape(-1, 1)
        median = float(np.median(fit_risk))
    else:
        logits = np.log(np.clip(test_out, 1e-12, 1.0))
        evaluation = task.report(logits, test_targets)
        metrics = evaluation.metrics
        notes += list(evaluation.notes)
    frame = prediction_frame(task, test_ids, logits, test_targets, fold)
    if median is not None:
        frame["risk_centred"] = frame["risk"] - median
    return FoldResult(frame, metrics, notes, selection, design.columns, design.dropped, median)


def _survival_metrics(
    model: Any, task: Any, x_test: np.ndarray, risk: np.ndarray, targets: np.ndarray,
    fit_risk: np.ndarray, y_fit: np.ndarray,
) -> tuple[dict[str, float], list[str]]:  # fmt: skip
    """The deep models' survival metrics; S(t) from the model, else a Breslow baseline on its risk."""
    from histo.plugins.tasks.metrics import survival_metrics
    from histo.plugins.tasks.survival_curves import BreslowBaseline

    def survival_fn(times: np.ndarray) -> np.ndarray:
        own = model.survival_function(x_test, times)
        if own is not None:
            return np.asarray(own, dtype=np.float64)
        baseline = BreslowBaseline.fit(fit_risk, y_fit[:, 0], y_fit[:, 1])
        return np.asarray(baseline.survival(risk, times), dtype=np.float64)

    result = survival_metrics(
        risk, targets[:, 1], targets[:, 2], train_time=y_fit[:, 0], train_event=y_fit[:, 1],
        eval_quantiles=task.config.eval_times, ibs_range=task.config.ibs_range, survival_fn=survival_fn,
    )  # fmt: skip
    return result.metrics, list(result.notes)
