"""Evaluation plots written as PNG. Each function takes arrays and a path and returns the path.

The numbers a plot shows (log-rank p-value, AUCs) are also stored in the PNG's `histo` text chunk as
JSON, so a report or a test reads exactly what was drawn (`read_png_metadata`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from histo.io import atomic_path

from .risk_groups import GroupSplit, risk_group_logrank

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 120
METADATA_KEY = "histo"


def _figure(width: float, height: float) -> Figure:
    """A figure on the Agg canvas, without pyplot: no global state, no GUI backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path | str, summary: dict[str, Any]) -> Path:
    path = Path(path)
    text = json.dumps(summary, default=_json_number)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI, metadata={METADATA_KEY: text})
    return path


def _json_number(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_png_metadata(path: Path | str) -> dict[str, Any]:
    """The summary a plot function stored in its PNG (NaN comes back as NaN)."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        text = image.info.get(METADATA_KEY)
    if text is None:
        raise ValueError(f"{path}: no {METADATA_KEY!r} metadata; was it written by histo's plots?")
    return dict(json.loads(text))


# -- Kaplan-Meier ----------------------------------------------------------------------------------
def plot_kaplan_meier(
    risk: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    path: Path | str,
    *,
    train_risk: np.ndarray | None = None,
    split: GroupSplit = "median",
    title: str = "",
    time_label: str = "time",
) -> Path:
    """Kaplan-Meier curves of predicted risk groups with the log-rank p-value and numbers at risk.

    Groups split at the training set's median (or tertiles) of risk when `train_risk` is given, else
    at the evaluated set's own: a threshold from the test set would leak its distribution.
    """
    from sksurv.nonparametric import kaplan_meier_estimator

    time = np.asarray(time, dtype=np.float64)
    event = np.asarray(event).astype(bool)
    test = risk_group_logrank(risk, time, event, train_risk=train_risk, split=split)
    colours = ["tab:blue", "tab:orange", "tab:red"] if split == "tertiles" else ["tab:blue", "tab:red"]

    figure = _figure(6.4, 5.6)
    grid = figure.add_gridspec(2, 1, height_ratios=[4, 1], hspace=0.35)
    axes: Axes = figure.add_subplot(grid[0])
    table: Axes = figure.add_subplot(grid[1], sharex=axes)
    populated = []
    for g, (name, colour) in enumerate(zip(test.names, colours, strict=True)):
        member = test.groups == g
        if not member.any():
            continue
        populated.append(g)
        x, y = kaplan_meier_estimator(event[member], time[member])
        label = f"{name} (n={member.sum()})"
        axes.step(np.r_[0.0, x], np.r_[1.0, y], where="post", color=colour, label=label)
        censored = time[member & ~event]
        if censored.size:
            at = np.searchsorted(x, censored, side="right") - 1
            axes.plot(censored, np.where(at >= 0, y[np.maximum(at, 0)], 1.0), "|", color=colour, ms=6)
    p_text = "n/a" if math.isnan(test.p_value) else f"{test.p_value:.3g}"
    axes.text(0.02, 0.04, f"log-rank p = {p_text}", transform=axes.transAxes)
    axes.set_ylim(0.0, 1.05)
    axes.set_xlim(left=0.0)
    axes.set_ylabel("survival probability")
    axes.set_title(title or f"Kaplan-Meier by predicted risk ({split})")
    axes.legend(loc="upper right", fontsize="small")
    axes.grid(alpha=0.3)

    ticks = [t for t in axes.get_xticks() if 0.0 <= t <= float(time.max())]
    for row, g in enumerate(reversed(populated)):
        member = test.groups == g
        for t in ticks:
            at_risk = str(int((time[member] >= t).sum()))
            table.text(t, row, at_risk, ha="center", va="center", fontsize="small")
    table.set_yticks(range(len(populated)), [test.names[g] for g in reversed(populated)], fontsize="small")
    table.set_ylim(-0.5, len(populated) - 0.5)
    table.set_xlabel(time_label)
    table.set_title("number at risk", fontsize="small", loc="left")
    for side in ("top", "right", "left"):
        table.spines[side].set_visible(False)
    table.tick_params(axis="y", length=0, pad=16)
    for tick, g in zip(table.get_yticklabels(), reversed(populated), strict=True):
        tick.set_color(colours[g])
    figure.subplots_adjust(left=0.22, right=0.96)

    summary = {
        "plot": "kaplan_meier",
        "split": split,
        "thresholds": test.thresholds,
        "threshold_source": "train" if train_risk is not None else "evaluated",
        "group_sizes": [int((test.groups == g).sum()) for g in range(len(test.names))],
        "logrank_chi2": test.chi2,
        "logrank_p": test.p_value,
    }
    return _save(figure, path, summary)


# -- ROC -------------------------------------------------------------------------------------------
def plot_roc(
    probabilities: np.ndarray,
    targets: np.ndarray,
    class_names: Sequence[str],
    path: Path | str,
    *,
    title: str = "",
) -> Path:
    """ROC curves: the positive (second) class for two classes, one-vs-rest per class otherwise.

    A class without positives or negatives in `targets` has no curve; the legend says so.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    probabilities = np.asarray(probabilities, dtype=np.float64)
    targets = np.asarray(targets).astype(np.int64)
    shown = [1] if len(class_names) == 2 else list(range(len(class_names)))
    figure = _figure(5.6, 5.2)
    axes = figure.add_subplot()
    aucs: dict[str, float] = {}
    for k in shown:
        positive = targets == k
        name = class_names[k]
        if positive.all() or not positive.any():
            aucs[name] = float("nan")
            axes.plot([], [], label=f"{name}: no curve (class {'only' if positive.all() else 'absent'})")
            continue
        fpr, tpr, _ = roc_curve(positive, probabilities[:, k])
        aucs[name] = float(roc_auc_score(positive, probabilities[:, k]))
        label = f"{name} (AUC = {aucs[name]:.3f})" if len(shown) > 1 else f"AUC = {aucs[name]:.3f}"
        axes.plot(fpr, tpr, label=label)
    axes.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
    axes.set_xlim(0.0, 1.0)
    axes.set_ylim(0.0, 1.02)
    axes.set_xlabel("false positive rate")
    axes.set_ylabel("true positive rate")
    axes.set_title(title or ("ROC" if len(shown) == 1 else "ROC, one-vs-rest"))
    axes.legend(loc="lower right", fontsize="small")
    axes.grid(alpha=0.3)
    return _save(figure, path, {"plot": "roc", "auc": aucs})


# -- confusion matrix ------------------------------------------------------------------------------
def confusion_counts(targets: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """[true class, predicted class] counts."""
    targets = np.asarray(targets).astype(np.int64)
    predicted = np.asarray(predicted).astype(np.int64)
    flat = np.bincount(targets * num_classes + predicted, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def plot_confusion_matrix(
    targets: np.ndarray,
    predicted: np.ndarray,
    class_names: Sequence[str],
    path: Path | str,
    *,
    title: str = "",
) -> Path:
    """Counts and row-normalised (recall per true class) confusion matrices side by side."""
    k = len(class_names)
    counts = confusion_counts(targets, predicted, k)
    totals = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    size = 3.2 + 0.45 * k
    figure = _figure(2 * size + 1.0, size)
    for index, (matrix, label) in enumerate([(counts, "counts"), (normalised, "row-normalised")]):
        axes = figure.add_subplot(1, 2, index + 1)
        image = axes.imshow(matrix, cmap="Blues", vmin=0, vmax=max(1, matrix.max()) if index == 0 else 1)
        figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
        threshold = (matrix.max() if index == 0 else 1) / 2
        for i in range(k):
            for j in range(k):
                if index == 0:
                    text = str(counts[i, j])
                else:
                    text = "-" if totals[i, 0] == 0 else f"{matrix[i, j]:.2f}"
                colour = "white" if matrix[i, j] > threshold else "black"
                axes.text(j, i, text, ha="center", va="center", color=colour, fontsize="small")
        axes.set_xticks(range(k), list(class_names), rotation=45, ha="right", fontsize="small")
        axes.set_yticks(range(k), list(class_names), fontsize="small")
        axes.set_xlabel("predicted")
        axes.set_ylabel("true")
        axes.set_title(label)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return _save(figure, path, {"plot": "confusion_matrix", "classes": list(class_names), "counts": counts})
