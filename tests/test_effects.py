"""Ablation effects (histo.plugins.evaluation.effects): the t-interval covers the true mean difference
at its level, a real effect is called, noise is not."""

from __future__ import annotations

import numpy as np
import pandas as pd

from histo.plugins.evaluation.effects import component_effect, effects_markdown, mean_interval, verdict
from histo.plugins.evaluation.paired import Model


def frame(n: int, shift: float, rng: np.random.Generator) -> pd.DataFrame:
    target = rng.integers(0, 2, size=n)
    p = 1 / (1 + np.exp(-(rng.normal(size=n) + shift * target)))
    return pd.DataFrame({
        "patient_id": [f"P{i}" for i in range(n)], "fold": np.arange(n) % 10,
        "target": np.where(target == 1, "b", "a"), "prob_a": 1 - p, "prob_b": p,
    })  # fmt: skip


def model(name: str, values: list[float], predictions: pd.DataFrame) -> Model:
    return Model(name, name, {k: {"auc": v} for k, v in enumerate(values)}, predictions)


def test_interval_covers_the_true_mean_at_its_level() -> None:
    rng = np.random.default_rng(0)
    covered = sum(
        low <= 0.02 <= high
        for low, high in (mean_interval(list(rng.normal(0.02, 0.05, 10))) for _ in range(400))
    )
    assert 360 <= covered <= 396  # 95%: about 380 of 400
    assert np.isnan(mean_interval([0.1])[0])


def test_a_real_effect_is_called_and_noise_is_not() -> None:
    rng = np.random.default_rng(1)
    base = list(rng.uniform(0.6, 0.8, 10))
    predictions = frame(300, 1.0, rng)
    real = component_effect(
        "c", model("full", [b + 0.05 + rng.normal(0, 0.01) for b in base], predictions),
        model("off", base, predictions), "auc", n_resamples=100, seed=0,
    )  # fmt: skip
    assert real["verdict"] == "helps" and real["ci_low"] > 0 and real["t_p"] < 0.01 and real["n"] == 10
    noise = component_effect(
        "c", model("full", [b + rng.normal(0, 0.03) for b in base], predictions),
        model("off", base, predictions), "auc", n_resamples=100, seed=0,
    )  # fmt: skip
    assert noise["verdict"] == "no effect beyond noise" and noise["ci_low"] < 0 < noise["ci_high"]
    assert np.isfinite(real["pooled_difference"])
    other = Model("x", "x", {k: {"accuracy": v} for k, v in enumerate(base)}, predictions)
    row = component_effect("c", other, other, "accuracy", n_resamples=10, seed=0)
    assert np.isnan(row["pooled_difference"])  # the pooled bootstrap is of AUC, not of accuracy
    assert verdict("auc", -0.05, -0.08, -0.02, 0.001) == "hurts"
    assert verdict("loss", -0.05, -0.08, -0.02, 0.001) == "helps"  # lower loss is better
    table = effects_markdown([real, noise])
    assert table.count("\n| c | auc |") == 2 and "no effect beyond noise" in table


def test_other_folds_are_not_paired() -> None:
    rng = np.random.default_rng(2)
    a, b = frame(100, 1.0, rng), frame(100, 1.0, rng)
    b["patient_id"] = [f"Q{i}" for i in range(100)]
    row = component_effect("c", model("x", [0.7] * 10, a), model("y", [0.6] * 10, b), "auc",
                           n_resamples=10, seed=0)  # fmt: skip
    assert row["verdict"] == "not paired" and np.isnan(row["ci_low"])
