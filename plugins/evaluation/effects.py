"""Each component's effect in an ablation: the full method against the same method with the component
off, on the same folds (seeds), as the mean paired difference with its t-interval over folds, the paired
t and Wilcoxon p-values, and the bootstrap CI of the pooled out-of-fold difference (paired.py).

The t-interval treats the folds as independent draws: true for the planted benchmark's seeds (each an
independent cohort), only roughly for cross-validation folds (they share training patients).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .bootstrap import LEVEL
from .paired import ALPHA, LOWER_IS_BETTER, Model, compare_pair

NAN = float("nan")


def mean_interval(differences: list[float], level: float = LEVEL) -> tuple[float, float]:
    """Two-sided t-interval of the mean of paired differences; NaN with fewer than 2."""
    from scipy import stats

    d = np.asarray(differences, dtype=float)
    if len(d) < 2:
        return NAN, NAN
    half = float(stats.t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))
    return float(d.mean() - half), float(d.mean() + half)


def verdict(metric: str, mean: float, low: float, high: float, t_p: float) -> str:
    """`helps`, `hurts` or `no effect beyond noise`: the interval must exclude 0 and the t-test agree."""
    if not (math.isfinite(low) and math.isfinite(t_p)) or t_p >= ALPHA or low <= 0 <= high:
        return "no effect beyond noise"
    better = mean < 0 if metric in LOWER_IS_BETTER else mean > 0
    return "helps" if better else "hurts"


def component_effect(
    name: str, full: Model, ablated: Model, metric: str, *, n_resamples: int, seed: int
) -> dict[str, Any]:
    """One row of the effects table: full minus ablated on `metric` (positive = the component adds)."""
    test = compare_pair(full, ablated, metric, n_resamples=n_resamples, seed=seed, primary=True)
    low, high = mean_interval(test.differences) if test.same_folds else (NAN, NAN)
    if test.pooled_metric != metric:  # the pooled bootstrap is of the primary metric only
        test.pooled_difference = test.ci_low = test.ci_high = NAN
    row = {
        "component": name,
        "full": full.id,
        "ablated": ablated.id,
        "metric": metric,
        "n": len(test.folds),
        "full_mean": float(np.mean(test.a_values)) if test.a_values else NAN,
        "ablated_mean": float(np.mean(test.b_values)) if test.b_values else NAN,
        "effect": test.mean_difference,
        "ci_low": low,
        "ci_high": high,
        "t_p": test.t_p,
        "wilcoxon_p": test.wilcoxon_p,
        "pooled_difference": test.pooled_difference,
        "pooled_ci_low": test.ci_low,
        "pooled_ci_high": test.ci_high,
        "same_folds": test.same_folds,
        "verdict": verdict(metric, test.mean_difference, low, high, test.t_p)
        if test.same_folds
        else "not paired",
    }
    return row


def effects_markdown(rows: list[dict[str, Any]], level: float = LEVEL) -> str:
    """The effects as a Markdown table, one line per component and metric."""

    def num(value: Any, fmt: str = "+.3f") -> str:
        return format(value, fmt) if isinstance(value, float) and math.isfinite(value) else "n/a"

    lines = [
        f"| component | metric | with | without | effect (mean over n) | {level:.0%} CI | paired t p "
        "| Wilcoxon p | pooled difference (bootstrap CI) | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        pooled = (
            f"{num(r['pooled_difference'])} ({num(r['pooled_ci_low'])} to {num(r['pooled_ci_high'])})"
            if isinstance(r["pooled_difference"], float) and math.isfinite(r["pooled_difference"])
            else "n/a"
        )
        lines.append(
            f"| {r['component']} | {r['metric']} | {num(r['full_mean'], '.3f')} "
            f"| {num(r['ablated_mean'], '.3f')} "
            f"| {num(r['effect'])} (n={r['n']}) | {num(r['ci_low'])} to {num(r['ci_high'])} "
            f"| {num(r['t_p'], '.2g')} | {num(r['wilcoxon_p'], '.2g')} | {pooled} | {r['verdict']} |"
        )
    lines += [
        "",
        "effect = full method minus the component off, per fold (seed), averaged; CI: t-interval of that "
        "mean; verdict: 'helps' or 'hurts' only when the CI excludes 0 and the paired t-test has p < 0.05.",
    ]
    return "\n".join(lines) + "\n"
