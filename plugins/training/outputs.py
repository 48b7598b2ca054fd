"""What a training stage leaves behind: out-of-fold predictions, metrics with mean and std, plots."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from histo.io import atomic_path, write_json_atomic


def prediction_frame(
    task: Any, patients: Sequence[str], logits: np.ndarray, targets: np.ndarray, fold: int
) -> pd.DataFrame:
    """One row per patient: fold, target, and the task's outputs (probabilities or risk)."""
    frame = pd.DataFrame({"patient_id": list(patients), "fold": fold})
    outputs = task.predict(logits)
    if targets.ndim == 2:  # survival: (bin, time, event)
        frame["time"], frame["event"] = targets[:, 1], targets[:, 2].astype(int)
    else:
        classes = getattr(task.config, "classes", None)
        frame["target"] = [classes[int(t)] if classes else int(t) for t in targets]
    add_output_columns(frame, task, outputs)
    return frame


def add_output_columns(frame: pd.DataFrame, task: Any, outputs: Mapping[str, Any]) -> None:
    """The task's per-sample outputs as columns: 1-D ones as they are, `prob_<class>` per class,
    `survival_bin<k>` per survival bin (other 2-D outputs, e.g. hazards, are left out)."""
    for key, value in outputs.items():
        value = np.asarray(value)
        if value.ndim == 1:
            frame[key] = value
        elif key == "probabilities":
            for i, name in enumerate(class_names(task, value.shape[1])):
                frame[f"prob_{name}"] = value[:, i]
        elif key == "survival":
            for i in range(value.shape[1]):
                frame[f"survival_bin{i}"] = value[:, i]


def class_names(task: Any, count: int) -> list[str]:
    return getattr(task.config, "classes", None) or [str(i) for i in range(count)]


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def summarise(per_fold: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and sample std of each metric over the folds where it is defined."""
    names = sorted({k for fold in per_fold for k in fold})
    summary = {}
    for name in names:
        values = [
            f[name] for f in per_fold if isinstance(f.get(name), int | float) and math.isfinite(f[name])
        ]
        if values:
            summary[name] = {
                "mean": float(np.mean(values)),
                "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                "folds": len(values),
            }
    return summary


def write_metrics(path: Path, per_fold: list[dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
    metrics = {"folds": per_fold, "summary": summarise([f["test"] for f in per_fold]), **extra}
    write_json_atomic(path, metrics)
    return metrics


def plots(task: Any, predictions: pd.DataFrame, out_dir: Path, time_unit: str) -> dict[str, str]:
    """KM curves of risk groups (survival) or ROC + confusion matrix (classification), out of fold."""
    from histo.plugins.evaluation.plots import plot_confusion_matrix, plot_kaplan_meier, plot_roc

    made: dict[str, str] = {}
    if "risk" in predictions and "time" in predictions:
        # each fold's risks are centred on that fold's training median, so one threshold (0) splits
        # every fold the way its own model would, and the groups can be pooled
        path = plot_kaplan_meier(
            predictions["risk_centred"].to_numpy(), predictions["time"].to_numpy(),
            predictions["event"].to_numpy(), out_dir / "km_risk_groups.png", train_risk=np.zeros(1),
            title="Out-of-fold risk groups (split at each fold's training median)", time_label=time_unit,
        )  # fmt: skip
        made[path.name] = "Kaplan-Meier curves of predicted risk groups with the log-rank p-value"
    classes = getattr(task.config, "classes", None)
    prob_columns = [f"prob_{c}" for c in classes] if classes else []
    if prob_columns and all(c in predictions for c in prob_columns):
        probabilities = predictions[prob_columns].to_numpy()
        targets = np.array([classes.index(t) for t in predictions["target"]])
        path = plot_roc(probabilities, targets, classes, out_dir / "roc.png", title="Out-of-fold ROC")
        made[path.name] = "ROC curves, one-vs-rest"
        path = plot_confusion_matrix(
            targets,
            probabilities.argmax(1),
            classes,
            out_dir / "confusion.png",
            title="Out-of-fold predictions",
        )
        made[path.name] = "confusion matrix"
    return made
