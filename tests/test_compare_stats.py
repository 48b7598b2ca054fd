"""The statistics of comparisons: Harrell's C as scikit-survival computes it, bootstrap CIs that cover
the truth, and paired tests that find a real difference and no false one."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm

from histo.plugins.evaluation.bootstrap import harrell, pooled_summary
from histo.plugins.evaluation.paired import Model, compare_pair, fold_tests


def test_harrell_matches_scikit_survival_with_ties() -> None:
    from sksurv.metrics import concordance_index_censored

    rng = np.random.default_rng(0)
    for _ in range(5):
        time = rng.integers(1, 15, size=80).astype(float)  # many tied times
        event = rng.random(80) < 0.6
        risk = rng.integers(0, 6, size=80).astype(float)  # and tied risks
        expected = concordance_index_censored(event, time, risk)[0]
        assert harrell(risk, time, event.astype(float)) == np.float64(expected)
        assert harrell(risk, time, event.astype(float), block=7) == np.float64(expected)  # in blocks


def test_auc_matches_scikit_learn() -> None:
    from sklearn.metrics import roc_auc_score

    from histo.plugins.evaluation.bootstrap import auc

    rng = np.random.default_rng(5)
    target = rng.integers(0, 3, size=90)
    probabilities = rng.dirichlet(np.ones(3), size=90).round(1)  # with ties
    probabilities /= probabilities.sum(1, keepdims=True)
    expected = roc_auc_score(target, probabilities, multi_class="ovr", average="macro")
    assert abs(auc(probabilities, target) - expected) < 1e-12
    binary = np.stack([1 - probabilities[:, 1], probabilities[:, 1]], axis=1)
    assert abs(auc(binary, target % 2) - roc_auc_score(target % 2, probabilities[:, 1])) < 1e-12


def classification_frame(n: int, shift: float, rng: np.random.Generator) -> pd.DataFrame:
    target = rng.integers(0, 2, size=n)
    score = rng.normal(size=n) + shift * target
    p = 1 / (1 + np.exp(-score))
    return pd.DataFrame({
        "patient_id": [f"P{i}" for i in range(n)], "fold": np.arange(n) % 5,
        "target": np.where(target == 1, "b", "a"), "prob_a": 1 - p, "prob_b": p,
    })  # fmt: skip


def test_bootstrap_interval_covers_the_true_auc() -> None:
    true_auc = norm.cdf(1.0 / np.sqrt(2))  # two unit normals one apart
    rng = np.random.default_rng(1)
    covered = 0
    for trial in range(40):
        entry = pooled_summary(classification_frame(200, 1.0, rng), n_resamples=300, seed=trial)["auc"]
        covered += entry["low"] <= true_auc <= entry["high"]
    assert covered >= 34  # a 95% interval: about 38 of 40, and not far below


def model(name: str, values: list[float], frame: pd.DataFrame) -> Model:
    return Model(name, name, {k: {"auc": v} for k, v in enumerate(values)}, frame)


def test_paired_tests_find_a_real_difference_and_no_false_one() -> None:
    rng = np.random.default_rng(2)
    base = [0.70, 0.62, 0.75, 0.66, 0.71, 0.68, 0.73, 0.64]
    better = [b + 0.06 + rng.normal(scale=0.01) for b in base]
    noise = [b + rng.normal(scale=0.03) for b in base]
    good, weak = classification_frame(400, 2.0, rng), classification_frame(400, 0.2, rng)
    weak["patient_id"], weak["fold"] = good["patient_id"], good["fold"]

    test = compare_pair(model("A", better, good), model("B", base, weak), "auc", n_resamples=300, seed=0,
                        primary=True)  # fmt: skip
    assert test.t_p < 0.001 and test.wilcoxon_p < 0.05
    assert test.ci_low > 0 and "A is better than B on these 8 folds" in test.sentence

    same = classification_frame(400, 1.0, rng)
    test = compare_pair(model("A", noise, same), model("B", base, same), "auc", n_resamples=300, seed=0,
                        primary=True)  # fmt: skip
    assert test.t_p > 0.05 and "not distinguishable" in test.sentence
    assert abs(test.pooled_difference) < 1e-12  # identical predictions


def test_few_folds_say_their_tests_lack_power() -> None:
    rng = np.random.default_rng(3)
    frame = classification_frame(100, 1.0, rng)
    test = compare_pair(model("A", [0.8, 0.7, 0.75], frame), model("B", [0.6, 0.55, 0.6], frame), "auc",
                        n_resamples=100, seed=0, primary=True)  # fmt: skip
    assert "With 3 folds the paired tests have little power" in test.sentence
    assert np.isnan(fold_tests([0.5, 0.6], [0.4, 0.5])[0])  # equal differences: no variance, no test


def test_models_on_other_folds_are_not_paired() -> None:
    rng = np.random.default_rng(4)
    a, b = classification_frame(50, 1.0, rng), classification_frame(50, 1.0, rng)
    b["fold"] = (b["fold"] + 1) % 5
    test = compare_pair(model("A", [0.7] * 5, a), model("B", [0.6] * 5, b), "auc", n_resamples=50, seed=0,
                        primary=True)  # fmt: skip
    assert not test.same_folds and "not tested on the same folds" in test.sentence
    test = compare_pair(model("A", [0.7] * 5, a), model("B", [0.6] * 5, pd.DataFrame()), "auc",
                        n_resamples=50, seed=0, primary=True)  # fmt: skip
    assert not test.same_folds  # no predictions.csv: the folds cannot be checked, so no paired test
