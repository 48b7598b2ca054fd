"""Whether a train stage learned anything: its mean test AUC or C-index against chance (0.5).

Both are 0.5 for a model that ranks at random. A result counts as above chance only when the mean
minus one standard deviation over the folds is above 0.5: a mean of 0.6 with folds ranging from 0.4
to 0.8 is not evidence of learning, and the report says so in words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

CHANCE = 0.5
# (metric key in metrics.json, label): the first one a stage reports is judged
RANKING_METRICS = (("c_index", "C-index"), ("auc", "AUC"))


@dataclass(frozen=True)
class Verdict:
    level: str  # "above", "chance", "below" or "unknown"
    text: str


def chance_verdict(summary: dict[str, Any]) -> Verdict | None:
    """The verdict for a metrics.json `summary` ({metric: {mean, std, folds}}), or None without a
    ranking metric to judge."""
    for key, label in RANKING_METRICS:
        entry = summary.get(key)
        if not isinstance(entry, dict):
            continue
        mean, std, folds = entry.get("mean"), entry.get("std") or 0.0, int(entry.get("folds") or 0)
        if not isinstance(mean, int | float) or not math.isfinite(mean):
            continue
        return _judge(label, float(mean), float(std), folds)
    return None


def _judge(label: str, mean: float, std: float, folds: int) -> Verdict:
    stated = f"mean test {label} {mean:.3f} ± {std:.3f} over {folds} fold{'s' if folds != 1 else ''}"
    if folds < 2:
        return Verdict(
            "unknown",
            f"Cannot tell whether learning is above chance: test {label} {mean:.3f} comes from a single "
            "fold, so there is no spread to compare with chance (0.5). Use more folds.",
        )
    if mean - std > CHANCE:
        return Verdict(
            "above",
            f"Learning is above chance: {stated}; mean - std = {mean - std:.3f} is above 0.5.",
        )
    if mean + std < CHANCE:
        return Verdict(
            "below",
            f"Worse than chance: {stated}; mean + std = {mean + std:.3f} is below 0.5. The predictions "
            "run against the truth: check the label order or the direction of the risk.",
        )
    return Verdict(
        "chance",
        f"Not distinguishable from chance: {stated}; 0.5 lies within one standard deviation of the "
        "mean, so this run shows no reliable learning.",
    )
