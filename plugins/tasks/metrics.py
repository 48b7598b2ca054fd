"""Metrics on a whole split: classification through torchmetrics, survival through scikit-survival.

Every function returns an `Evaluation`: the numbers plus notes that say why a number is NaN (a class
missing from the split, no events, eval times outside follow-up), so a degenerate fold never crashes a
run and never hides why a metric is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

NAN = float("nan")
IBS_GRID_POINTS = 50


@dataclass
class Evaluation:
    metrics: dict[str, float]
    notes: list[str] = field(default_factory=list)

    def note(self, message: str) -> None:
        self.notes.append(message)
        log.info("%s", message)


def quantile_key(prefix: str, quantile: float) -> str:
    """Metric name for a quantile: td_auc_q25, td_auc_q50 (q12.5 for a fractional percent)."""
    percent = quantile * 100
    text = f"{percent:g}" if not float(percent).is_integer() else str(int(percent))
    return f"{prefix}_q{text}"


# -- classification --------------------------------------------------------------------------------
def classification_metrics(
    probabilities: np.ndarray, targets: np.ndarray, class_names: Sequence[str], ordinal: bool = False
) -> Evaluation:
    """AUC (binary, or macro one-vs-rest), accuracy, balanced accuracy, macro F1 (+ kappa/MAE if ordinal).

    Balanced accuracy is the mean recall over the classes present in `targets` and macro F1 averages
    over classes present in targets or predictions, as scikit-learn defines them.
    """
    import torch
    from torchmetrics.functional.classification import (
        binary_auroc,
        multiclass_accuracy,
        multiclass_cohen_kappa,
        multiclass_f1_score,
        multiclass_recall,
    )
    from torchmetrics.functional.classification import multiclass_auroc as _multiclass_auroc

    k = len(class_names)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    targets = np.asarray(targets).astype(np.int64)
    names = ["auc", "accuracy", "balanced_accuracy", "f1_macro"]
    names += ["kappa_quadratic", "mae"] if ordinal else []
    result = Evaluation({name: NAN for name in names})
    if targets.shape[0] == 0:
        result.note("no samples to evaluate; every metric is NaN")
        return result
    if probabilities.shape != (targets.shape[0], k):
        raise ValueError(f"probabilities have shape {probabilities.shape}, expected ({len(targets)}, {k})")
    if targets.min() < 0 or targets.max() >= k:
        raise ValueError(f"targets must be class indices in [0, {k}); got {targets.min()}..{targets.max()}")

    probs = torch.from_numpy(probabilities)
    target = torch.from_numpy(targets)
    predicted = probs.argmax(dim=1)
    present = np.bincount(targets, minlength=k) > 0
    metrics = result.metrics

    metrics["accuracy"] = float(multiclass_accuracy(predicted, target, k, average="micro"))
    recall = multiclass_recall(predicted, target, k, average=None).numpy()
    metrics["balanced_accuracy"] = float(recall[present].mean())
    metrics["f1_macro"] = float(multiclass_f1_score(predicted, target, k, average="macro"))
    if not present.all():
        missing = ", ".join(repr(class_names[int(i)]) for i in np.flatnonzero(~present))
        result.note(f"AUC is undefined: class(es) {missing} absent from this split")
    elif k == 2:
        metrics["auc"] = float(binary_auroc(probs[:, 1], target))
    else:
        metrics["auc"] = float(_multiclass_auroc(probs, target, k, average="macro"))
    if ordinal:
        metrics["kappa_quadratic"] = float(multiclass_cohen_kappa(predicted, target, k, weights="quadratic"))
        metrics["mae"] = float((predicted - target).abs().double().mean())
    return result


# -- survival --------------------------------------------------------------------------------------
def structured(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """scikit-survival's target: a structured array with fields (event: bool, time: float)."""
    from sksurv.util import Surv

    return Surv.from_arrays(event=np.asarray(event).astype(bool), time=np.asarray(time, dtype=np.float64))


def harrell_c_index(risk: np.ndarray, time: np.ndarray, event: np.ndarray) -> float:
    """Harrell's C-index (scikit-survival's), NaN where it is undefined (no event, no comparable pair,
    non-finite risk), exactly as `survival_metrics` reports it."""
    from sksurv.metrics import concordance_index_censored

    risk = np.asarray(risk, dtype=np.float64).reshape(-1)
    event = np.asarray(event).astype(bool)
    if not np.isfinite(risk).all() or len(risk) < 2 or not event.any():
        return NAN
    try:
        return float(concordance_index_censored(event, np.asarray(time, dtype=np.float64), risk)[0])
    except ValueError:  # sksurv: no comparable pairs (every event after every censoring, ties)
        return NAN


def survival_metrics(
    risk: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    *,
    train_time: np.ndarray | None = None,
    train_event: np.ndarray | None = None,
    eval_quantiles: Sequence[float] = (0.25, 0.5, 0.75),
    ibs_range: tuple[float, float] = (0.1, 0.9),
    survival_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    survival_note: str = "",
) -> Evaluation:
    """Harrell's and IPCW C-index, time-dependent AUC at quantiles of event times, integrated Brier score.

    `risk`: higher means earlier event. The training set's (time, event), when given, estimates the
    censoring distribution for the IPCW metrics (else the evaluated set does, with a note).
    Test patients followed beyond the last training time are administratively censored there for
    td-AUC and IBS (the censoring survival is unknown beyond it), and the IPCW C-index is truncated at
    it (`tau`). `survival_fn(times) -> [n, len(times)]` gives each patient's S(t) for the IBS; without
    it the IBS is NaN and `survival_note` says why.
    """
    from sksurv.metrics import (
        concordance_index_ipcw,
        cumulative_dynamic_auc,
        integrated_brier_score,
    )

    risk = np.asarray(risk, dtype=np.float64).reshape(-1)
    time = np.asarray(time, dtype=np.float64)
    event = np.asarray(event).astype(bool)
    auc_keys = [quantile_key("td_auc", q) for q in eval_quantiles]
    result = Evaluation({name: NAN for name in ["c_index", "c_index_ipcw", *auc_keys, "td_auc_mean", "ibs"]})
    metrics = result.metrics
    if not (risk.shape[0] == time.shape[0] == event.shape[0]):
        raise ValueError(f"risk ({len(risk)}), time ({len(time)}) and event ({len(event)}) lengths differ")
    if not np.isfinite(risk).all():
        result.note("risk scores contain NaN or inf; every survival metric is NaN")
        return result
    if time.shape[0] < 2 or not event.any():
        result.note(f"{len(time)} patient(s), {int(event.sum())} event(s): no comparable pairs; metrics NaN")
        return result

    metrics["c_index"] = harrell_c_index(risk, time, event)
    if np.isnan(metrics["c_index"]):
        result.note("no comparable pair (every event after every censoring time): C-index NaN")

    test = structured(time, event)
    if train_time is not None and train_event is not None and len(train_time) > 0:
        train = structured(train_time, train_event)
    else:
        train = test
        result.note("no training reference given: censoring weights estimated on the evaluated set")
    horizon = float(train["time"].max())

    tau = None
    if (time[event] > horizon).any():
        tau = horizon
        result.note(f"IPCW C-index truncated at the last training time tau={horizon:.4g}")
    try:
        metrics["c_index_ipcw"] = float(concordance_index_ipcw(train, test, risk, tau=tau)[0])
    except ValueError as exc:
        result.note(f"IPCW C-index not computable: {exc}")

    # Beyond the last training time the censoring survival is unknown: censor there.
    beyond = time > horizon
    if beyond.any():
        result.note(
            f"{int(beyond.sum())} patient(s) followed beyond the last training time {horizon:.4g} "
            "are censored there for td-AUC and IBS"
        )
    admin = structured(np.minimum(time, horizon), event & ~beyond)
    low, high = float(time.min()), min(float(time.max()), horizon)

    if not admin["event"].any():
        result.note("no events within the training follow-up: td-AUC and IBS are NaN")
        return result
    wanted = np.quantile(time[event], list(eval_quantiles))
    inside = (wanted >= low) & (wanted < high)
    for q, t, ok in zip(eval_quantiles, wanted, inside, strict=True):
        if not ok:
            result.note(
                f"td-AUC at quantile {q:g} (t={t:.4g}) skipped: outside follow-up [{low:.4g}, {high:.4g})"
            )
    if inside.any():
        try:
            scores, mean_auc = cumulative_dynamic_auc(train, admin, risk, wanted[inside])
        except ValueError as exc:
            result.note(f"td-AUC not computable: {exc}")
        else:
            for key, score in zip(np.asarray(auc_keys)[inside], np.atleast_1d(scores), strict=True):
                metrics[str(key)] = float(score)
            metrics["td_auc_mean"] = float(mean_auc)

    if survival_fn is None:
        result.note(survival_note or "no survival function: IBS not computed")
        return result
    grid = np.unique(np.quantile(time, np.linspace(ibs_range[0], ibs_range[1], IBS_GRID_POINTS)))
    grid = grid[(grid >= low) & (grid < high)]
    if grid.size < 2:
        result.note(f"IBS skipped: fewer than 2 distinct times inside follow-up [{low:.4g}, {high:.4g})")
        return result
    estimate = np.asarray(survival_fn(grid), dtype=np.float64)
    try:
        metrics["ibs"] = float(integrated_brier_score(train, admin, estimate, grid))
    except ValueError as exc:
        result.note(f"IBS not computable: {exc}")
    return result
