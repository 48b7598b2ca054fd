"""Survival metrics reported by the survival task equal scikit-survival's on the same predictions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sksurv.linear_model.coxph import BreslowEstimator
from sksurv.metrics import (
    concordance_index_censored,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
    integrated_brier_score,
)
from sksurv.util import Surv

from histo.plugins import tasks as tasks_plugin
from histo.plugins.tasks.metrics import survival_metrics
from histo.plugins.tasks.survival_curves import BreslowBaseline, step_survival


def survival(**params):  # type: ignore[no-untyped-def]
    spec = next(s for s in tasks_plugin.SPECS if s.name == "survival")
    return spec.build(params)


def cohort(n: int, seed: int, scale: float = 1.0) -> tuple[pd.DataFrame, np.ndarray]:
    """Times depend on a latent risk; about 40% censored. Returns labels and the latent risk."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=n)
    event_time = rng.exponential(np.exp(-latent)) * scale + 0.01
    censor_time = rng.exponential(1.5, size=n) * scale + 0.01
    time = np.minimum(event_time, censor_time)
    labels = pd.DataFrame(
        {"time": time, "event": (event_time <= censor_time).astype(int)},
        index=[f"S{seed}-{i}" for i in range(n)],
    )
    return labels, latent


def fitted_nll(bins: int = 4) -> tuple:  # type: ignore[type-arg]
    train, _ = cohort(200, seed=10, scale=3.0)  # longer follow-up: test times stay inside it
    test, latent = cohort(80, seed=11)
    task = survival(bins=bins)
    task.fit(train)
    rng = np.random.default_rng(12)
    logits = np.outer(latent, np.ones(bins)) + rng.normal(scale=0.8, size=(80, bins)) - 1.0
    return task, train, test, logits


def sk(labels: pd.DataFrame) -> np.ndarray:
    return Surv.from_arrays(event=labels["event"].to_numpy().astype(bool), time=labels["time"].to_numpy())


def test_c_index_equals_sksurv() -> None:
    task, _, test, logits = fitted_nll()
    metrics = task.evaluate(logits, task.encode(test))
    risk = task.predict(logits)["risk"]
    expected = concordance_index_censored(test["event"].astype(bool), test["time"], risk)[0]
    assert metrics["c_index"] == pytest.approx(expected, abs=1e-12)
    assert 0.55 < metrics["c_index"] < 1.0  # the logits carry the latent risk


def test_ipcw_c_index_and_td_auc_use_the_training_reference() -> None:
    task, train, test, logits = fitted_nll()
    assert test["time"].max() < train["time"].max()  # no truncation in this case
    metrics = task.evaluate(logits, task.encode(test))
    risk = task.predict(logits)["risk"]
    assert metrics["c_index_ipcw"] == pytest.approx(concordance_index_ipcw(sk(train), sk(test), risk)[0])

    times = np.quantile(test["time"][test["event"] == 1], [0.25, 0.5, 0.75])
    scores, mean_auc = cumulative_dynamic_auc(sk(train), sk(test), risk, times)
    assert [metrics["td_auc_q25"], metrics["td_auc_q50"], metrics["td_auc_q75"]] == pytest.approx(scores)
    assert metrics["td_auc_mean"] == pytest.approx(mean_auc)
    assert not any("no training reference" in note for note in task.notes)

    # Another training reference changes the IPCW numbers but not Harrell's C-index.
    other, _ = cohort(200, seed=99, scale=3.0)
    moved = task.evaluate(logits, task.encode(test), train_targets=task.encode(other))
    assert moved["c_index"] == metrics["c_index"]
    assert moved["c_index_ipcw"] == pytest.approx(concordance_index_ipcw(sk(other), sk(test), risk)[0])
    assert moved["c_index_ipcw"] != pytest.approx(metrics["c_index_ipcw"])


def _reference_step_survival(survival: np.ndarray, edges: np.ndarray, times: np.ndarray) -> np.ndarray:
    """S(t) for the discrete model written out bin by bin: 1 before the first inner edge, then the
    survival at the end of each bin that has fully elapsed."""
    out = np.ones((survival.shape[0], times.size))
    for j, t in enumerate(times):
        elapsed = int(np.sum(edges[1:-1] <= t))  # bins whose right edge is <= t
        if elapsed:
            out[:, j] = survival[:, elapsed - 1]
    return out


def test_nll_integrated_brier_score_equals_sksurv() -> None:
    task, train, test, logits = fitted_nll()
    metrics = task.evaluate(logits, task.encode(test))
    grid = np.unique(np.quantile(test["time"], np.linspace(0.1, 0.9, 50)))
    grid = grid[(grid >= test["time"].min()) & (grid < test["time"].max())]
    estimate = _reference_step_survival(task.predict(logits)["survival"], task.bin_edges, grid)
    expected = integrated_brier_score(sk(train), sk(test), estimate, grid)
    assert metrics["ibs"] == pytest.approx(expected, rel=1e-10)
    assert 0.0 < metrics["ibs"] < 0.5


def test_step_survival_reads_the_bin_that_has_elapsed() -> None:
    survival = np.array([[0.9, 0.6, 0.2]])
    inner = np.array([1.0, 2.0])
    got = step_survival(survival, inner, np.array([0.5, 1.0, 1.5, 2.0, 50.0]))
    np.testing.assert_allclose(got, [[1.0, 0.9, 0.9, 0.6, 0.6]])


def test_breslow_baseline_equals_sksurv() -> None:
    labels, latent = cohort(60, seed=3)
    time = np.round(labels["time"].to_numpy(), 1) + 0.1  # ties
    event = labels["event"].to_numpy()
    ours = BreslowBaseline.fit(latent * 3.0, time, event)
    theirs = BreslowEstimator().fit(latent * 3.0, event.astype(bool), time)
    # From the first time on: before it sksurv's step function repeats its first value, while
    # H0(t) = 0 before the first event by definition.
    grid = np.linspace(time.min(), time.max(), 40)
    expected = theirs.cum_baseline_hazard_(grid)
    np.testing.assert_allclose(ours.cumulative_hazard_at(grid) * math.exp(-ours.offset), expected, rtol=1e-10)
    surv = ours.survival(latent[:5] * 3.0, grid)
    fns = theirs.get_survival_function(latent[:5] * 3.0)
    np.testing.assert_allclose(surv, np.stack([fn(grid) for fn in fns]), rtol=1e-9, atol=1e-12)


def test_cox_ibs_needs_training_log_hazards_and_then_equals_sksurv() -> None:
    train, train_latent = cohort(200, seed=20, scale=3.0)
    test, test_latent = cohort(80, seed=21)
    task = survival(loss="cox")
    task.fit(train)
    targets = task.encode(test)
    without = task.evaluate(test_latent[:, None], targets)
    assert math.isnan(without["ibs"]) and any("train_logits" in n for n in task.notes)
    assert without["c_index"] == pytest.approx(
        concordance_index_censored(test["event"].astype(bool), test["time"], test_latent)[0]
    )

    metrics = task.evaluate(test_latent[:, None], targets, train_logits=train_latent[:, None])
    breslow = BreslowEstimator().fit(train_latent, train["event"].to_numpy(bool), train["time"].to_numpy())
    grid = np.unique(np.quantile(test["time"], np.linspace(0.1, 0.9, 50)))
    grid = grid[(grid >= test["time"].min()) & (grid < test["time"].max())]
    estimate = np.stack([fn(grid) for fn in breslow.get_survival_function(test_latent)])
    expected = integrated_brier_score(sk(train), sk(test), estimate, grid)
    assert metrics["ibs"] == pytest.approx(expected, rel=1e-8)

    with pytest.raises(ValueError, match="train_logits"):
        task.evaluate(test_latent[:, None], targets, train_logits=train_latent[:10, None])


def test_all_censored_split_gives_nan_with_a_note() -> None:
    task, _, test, logits = fitted_nll()
    censored = test.assign(event=0)
    metrics = task.evaluate(logits, task.encode(censored))
    assert all(math.isnan(v) for v in metrics.values())
    assert any("0 event(s)" in note for note in task.notes)


def test_follow_up_beyond_training_is_truncated_with_a_note() -> None:
    train, _ = cohort(120, seed=30, scale=0.5)  # short training follow-up
    test, latent = cohort(80, seed=31, scale=2.0)
    assert (test["time"][test["event"] == 1] > train["time"].max()).any()
    task = survival(loss="cox")
    task.fit(train)
    metrics = task.evaluate(latent[:, None], task.encode(test))
    assert math.isfinite(metrics["c_index_ipcw"]) and math.isfinite(metrics["td_auc_mean"])
    tau = train["time"].max()
    expected = concordance_index_ipcw(sk(train), sk(test), latent, tau=tau)[0]
    assert metrics["c_index_ipcw"] == pytest.approx(expected)
    assert any("truncated" in note for note in task.notes)
    assert any("beyond the last training time" in note for note in task.notes)


def test_without_a_training_reference_the_evaluated_set_weights_ipcw() -> None:
    test, latent = cohort(60, seed=40)
    result = survival_metrics(latent, test["time"].to_numpy(), test["event"].to_numpy())
    expected = concordance_index_ipcw(sk(test), sk(test), latent)[0]
    assert result.metrics["c_index_ipcw"] == pytest.approx(expected)
    assert any("no training reference" in note for note in result.notes)
    assert math.isnan(result.metrics["ibs"])  # no survival function given


def test_eval_times_outside_follow_up_are_skipped() -> None:
    time = np.arange(1.0, 13.0)
    event = np.array([1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 0])
    risk = -time + np.random.default_rng(0).normal(size=12)
    train_time, train_event = np.arange(1.0, 8.0), np.ones(7)  # training follow-up ends at 7
    result = survival_metrics(
        risk, time, event, train_time=train_time, train_event=train_event, eval_quantiles=[0.25, 0.9]
    )
    assert math.isfinite(result.metrics["td_auc_q25"])  # quantile 0.25 of event times: 3.25 < 7
    assert math.isnan(result.metrics["td_auc_q90"])  # about 10.6: beyond the training follow-up
    assert any("quantile 0.9" in note and "skipped" in note for note in result.notes)
