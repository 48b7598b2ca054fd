"""Is the difference between two models run on the same folds real? Per-fold differences, a paired t-test
and a Wilcoxon signed-rank test across folds (scipy), a bootstrap CI of the difference of their pooled
out-of-fold metric (the same resampled patients for both), and one plain sentence.

With 3-5 folds the fold-level tests have little power: the Wilcoxon test cannot go below p = 2 / 2^n
(0.0625 with 5 folds), so "not distinguishable" often means "not enough folds to tell"; the sentence
says so.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .bootstrap import LEVEL, interval, metric_function, resample_rows

ALPHA = 0.05
LOWER_IS_BETTER = {"ibs", "mae", "loss"}
NAN = float("nan")


@dataclass
class Model:
    """One compared stage: its row label, per-fold test metrics and out-of-fold predictions."""

    id: str
    label: str
    folds: dict[int, dict[str, float]]  # fold -> test metrics
    predictions: pd.DataFrame


@dataclass
class PairTest:
    a: str
    b: str
    metric: str
    folds: list[int]
    a_values: list[float]
    b_values: list[float]
    differences: list[float]
    mean_difference: float
    t_p: float
    wilcoxon_p: float
    pooled_metric: str | None = None
    pooled_difference: float = NAN
    ci_low: float = NAN
    ci_high: float = NAN
    bootstrap_p: float = NAN
    same_folds: bool = True
    sentence: str = ""
    notes: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()
        }


def fold_tests(a: list[float], b: list[float]) -> tuple[float, float]:
    """(paired t-test p, Wilcoxon signed-rank p), two-sided; NaN where a test is undefined (fewer than 2
    folds, or every difference equal)."""
    from scipy import stats

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = x - y
    if len(d) < 2 or np.allclose(d, d[0]):
        return NAN, NAN
    t_p = float(stats.ttest_rel(x, y).pvalue)
    try:
        w_p = float(stats.wilcoxon(d).pvalue)
    except ValueError:
        w_p = NAN
    return t_p, w_p


def same_test_patients(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Whether both predictions hold the same patients in the same test folds (unknown = no)."""
    if a.empty or b.empty or not {"fold", "patient_id"} <= set(a.columns) & set(b.columns):
        return False

    def sets(frame: pd.DataFrame) -> dict[int, frozenset[str]]:
        return {int(k): frozenset(g["patient_id"].astype(str)) for k, g in frame.groupby("fold")}

    return sets(a) == sets(b)


def pooled_difference(
    a: pd.DataFrame, b: pd.DataFrame, n_resamples: int, seed: int
) -> tuple[str | None, float, float, float, float]:
    """(metric, pooled a - b, CI low, CI high, two-sided bootstrap p) on the patients both predicted."""
    merged = a.assign(patient_id=a["patient_id"].astype(str)).merge(
        b.assign(patient_id=b["patient_id"].astype(str)), on="patient_id", suffixes=("", "__b")
    )
    left = merged[[c for c in merged.columns if not c.endswith("__b")]]
    right = merged[[c for c in merged.columns if c.endswith("__b") or c == "patient_id"]]
    right = right.rename(columns=lambda c: c[: -len("__b")] if c.endswith("__b") else c)
    fa, fb = metric_function(left), metric_function(right)
    if fa is None or fb is None or fa[0] != fb[0] or len(merged) == 0:
        return None, NAN, NAN, NAN, NAN
    n = len(merged)
    everyone = np.arange(n)
    estimate = fa[1](everyone) - fb[1](everyone)
    if n_resamples == 0:
        return fa[0], estimate, NAN, NAN, NAN
    draws = np.array([fa[1](rows) - fb[1](rows) for rows in resample_rows(n, n_resamples, seed)])
    low, high = interval(draws)
    finite = draws[np.isfinite(draws)]
    p = float(min(1.0, 2 * min((finite <= 0).mean(), (finite >= 0).mean()))) if finite.size else NAN
    return fa[0], float(estimate), low, high, p


def compare_pair(a: Model, b: Model, metric: str, *, n_resamples: int, seed: int, primary: bool) -> PairTest:
    folds = sorted(set(a.folds) & set(b.folds))
    pairs = [(a.folds[k].get(metric), b.folds[k].get(metric)) for k in folds]
    keep = [
        (k, x, y) for k, (x, y) in zip(folds, pairs, strict=True)
        if isinstance(x, int | float) and isinstance(y, int | float) and math.isfinite(x) and math.isfinite(y)
    ]  # fmt: skip
    ks, xs, ys = [k for k, _, _ in keep], [float(x) for _, x, _ in keep], [float(y) for _, _, y in keep]
    diffs = [x - y for x, y in zip(xs, ys, strict=True)]
    same = same_test_patients(a.predictions, b.predictions)
    t_p, w_p = fold_tests(xs, ys) if same else (NAN, NAN)
    test = PairTest(
        a.id, b.id, metric, ks, xs, ys, diffs, float(np.mean(diffs)) if diffs else NAN, t_p, w_p,
        same_folds=same,
    )  # fmt: skip
    if primary and same:
        name, diff, low, high, p = pooled_difference(a.predictions, b.predictions, n_resamples, seed)
        test.pooled_metric, test.pooled_difference, test.ci_low, test.ci_high, test.bootstrap_p = (
            name, diff, low, high, p,
        )  # fmt: skip
    if primary:
        test.sentence = sentence(test, a.label, b.label)
    return test


def sentence(test: PairTest, a: str, b: str) -> str:
    """What the tests say, in words a reader of a paper would use."""
    label = test.metric.replace("_", "-") if test.metric != "c_index" else "C-index"
    label = "AUC" if test.metric == "auc" else label
    n = len(test.folds)
    if not test.same_folds:
        return (
            f"{a} and {b} were not tested on the same folds and patients, so they cannot be compared "
            "pairwise."
        )
    if n < 2:
        return f"{a} and {b} share {n} fold with a {label}: too few for a paired test."
    sign = -1.0 if test.metric in LOWER_IS_BETTER else 1.0
    fold_significant = math.isfinite(test.t_p) and test.t_p < ALPHA
    boot_significant = math.isfinite(test.ci_low) and (test.ci_low > 0 or test.ci_high < 0)
    fold_better = sign * test.mean_difference > 0
    boot_better = sign * test.pooled_difference > 0 if math.isfinite(test.pooled_difference) else fold_better
    stats_text = (
        f"mean {label} difference {test.mean_difference:+.3f}; paired t p={_p(test.t_p)}, "
        f"Wilcoxon p={_p(test.wilcoxon_p)}, n={n}"
    )
    if math.isfinite(test.pooled_difference):
        stats_text += (
            f"; pooled out-of-fold difference {test.pooled_difference:+.3f}, "
            f"{LEVEL:.0%} bootstrap CI {test.ci_low:+.3f} to {test.ci_high:+.3f}"
        )
    if fold_significant and boot_significant and fold_better == boot_better:
        verdict = f"{a} is {'better' if fold_better else 'worse'} than {b} on these {n} folds"
    elif fold_significant or boot_significant:
        which = "paired t-test across folds" if fold_significant else "bootstrap of the pooled predictions"
        better = fold_better if fold_significant else boot_better
        verdict = (
            f"{a} may be {'better' if better else 'worse'} than {b} on these {n} folds, but only the {which} "
            "says so"
        )
    else:
        verdict = f"{a} is not distinguishable from {b} on these {n} folds"
    text = f"{verdict} ({stats_text})."
    if n < 6:
        text += (
            f" With {n} folds the paired tests have little power (Wilcoxon cannot go below "
            f"p={2 / 2**n:.3g}): a real difference of this size could go unseen."
        )
    return text


def _p(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.2g}"
