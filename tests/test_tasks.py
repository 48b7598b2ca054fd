"""Prediction tasks: label checks, fold-local fitting (no leakage), losses against hand computations,
and classification metrics against scikit-learn."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import ValidationError
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    f1_score,
    roc_auc_score,
)
from sklearn.utils.class_weight import compute_class_weight

from histo.errors import HistoError
from histo.plugins import tasks as tasks_plugin
from histo.plugins.tasks.losses import cox_partial_likelihood_loss, discrete_nll_loss


@pytest.fixture
def registry(histo_plugins):  # type: ignore[no-untyped-def]
    """The tasks registry of a fresh plugin manager: the plugin is one of histo's defaults."""
    registry = histo_plugins.registry("tasks")
    assert not [f for f in histo_plugins.failures if f.plugin == "tasks"]
    assert registry.get("survival").plugin == "tasks"
    return registry


def classification(**params):  # type: ignore[no-untyped-def]
    spec = next(s for s in tasks_plugin.SPECS if s.name == "classification")
    return spec.build({"column": "grade", "classes": ["1", "2", "3"], **params})


def survival(**params):  # type: ignore[no-untyped-def]
    spec = next(s for s in tasks_plugin.SPECS if s.name == "survival")
    return spec.build(params)


def patients(n: int) -> list[str]:
    return [f"P{i:03d}" for i in range(n)]


# -- registration and configs ----------------------------------------------------------------------
def test_both_tasks_register_and_build_from_params(registry) -> None:  # type: ignore[no-untyped-def]
    task = registry.build("classification", {"column": "subtype", "classes": ["LUAD", "LUSC"]})
    assert task.num_outputs == 2
    assert registry.build("survival", {}).num_outputs == 4
    assert registry.build("survival", {"loss": "cox"}).num_outputs == 1


def test_configs_reject_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValidationError, match="clases"):
        classification(clases=["a"])
    with pytest.raises(ValidationError, match="unique"):
        classification(classes=["a", "a"])
    with pytest.raises(ValidationError, match="eval_times"):
        survival(eval_times=[0.5, 1.5])
    with pytest.raises(ValidationError, match="bins"):
        survival(bins=1)


def test_classes_are_compared_as_text() -> None:
    task = classification(classes=["1", "2", "3"])  # quoted in YAML; the table holds numbers
    assert task.classes == ["1", "2", "3"]
    labels = pd.DataFrame({"grade": [1, 2.0, "3", " 2 "]}, index=patients(4))
    assert (task.usable(labels) == "").all()
    assert task.encode(labels).tolist() == [0, 1, 2, 1]


# -- classification labels -------------------------------------------------------------------------
def test_usable_names_the_value_and_the_allowed_classes() -> None:
    task = classification()
    labels = pd.DataFrame({"grade": [1, None, "4", "G2"]}, index=patients(4))
    reasons = task.usable(labels)
    assert reasons.index.tolist() == patients(4)
    assert reasons.iloc[0] == ""
    assert "missing" in reasons.iloc[1] and "grade" in reasons.iloc[1]
    assert "'4'" in reasons.iloc[2] and "1, 2, 3" in reasons.iloc[2]
    assert "'G2'" in reasons.iloc[3]
    with pytest.raises(HistoError, match="P001"):
        task.encode(labels)


def test_missing_column_is_a_user_error_naming_it() -> None:
    with pytest.raises(HistoError, match=r"'grade'.*columns: subtype"):
        classification().usable(pd.DataFrame({"subtype": ["a"]}, index=patients(1)))


def test_class_weights_come_from_training_rows_only() -> None:
    rng = np.random.default_rng(0)
    grades = rng.choice(["1", "2", "3"], size=60, p=[0.6, 0.3, 0.1])
    labels = pd.DataFrame({"grade": grades}, index=patients(60))
    train, valid = labels.iloc[:40], labels.iloc[40:]
    task = classification()
    task.fit(train)
    classes = np.array(["1", "2", "3"])
    expected = compute_class_weight("balanced", classes=classes, y=train["grade"].to_numpy())
    np.testing.assert_allclose(task.class_weights, expected)
    assert sum(task.train_counts.values()) == 40

    # Changing only validation labels must not move the weights.
    flipped = pd.concat([train, valid.assign(grade="3")])
    other = classification()
    other.fit(flipped.iloc[:40])
    np.testing.assert_allclose(other.class_weights, task.class_weights)
    full = classification()
    full.fit(flipped)
    assert not np.allclose(full.class_weights, task.class_weights)


def test_fit_ignores_unusable_rows_and_handles_an_absent_class() -> None:
    task = classification()
    task.fit(pd.DataFrame({"grade": ["1", "1", "2", None, "x"]}, index=patients(5)))
    assert task.train_counts == {"1": 2, "2": 1, "3": 0}
    np.testing.assert_allclose(task.class_weights, [3 / (3 * 2), 3 / 3, 3 / 3])
    assert "3" in task.fit_notes[0]


def test_unweighted_classification_needs_no_fit_and_weighted_loss_matches_hand_computation() -> None:
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-1.0, 3.0, 0.0]], requires_grad=True)
    targets = torch.tensor([0, 2, 1])
    plain = classification(class_weights="none")
    log_p = torch.log_softmax(logits.detach(), dim=1).numpy()
    nll = -log_p[[0, 1, 2], [0, 2, 1]]
    assert plain.loss(logits, targets).item() == pytest.approx(nll.mean(), rel=1e-6)

    weighted = classification()
    with pytest.raises(RuntimeError, match="fit"):
        weighted.loss(logits, targets)
    weighted.fit(pd.DataFrame({"grade": ["1", "1", "1", "2", "3", "3"]}, index=patients(6)))
    w = weighted.class_weights[[0, 2, 1]]
    loss = weighted.loss(logits, targets)
    assert loss.item() == pytest.approx((w * nll).sum() / w.sum(), rel=1e-6)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


# -- classification metrics vs scikit-learn --------------------------------------------------------
def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def assert_label_metrics_match_sklearn(
    metrics: dict[str, float], targets: np.ndarray, predicted: np.ndarray
) -> None:
    """torchmetrics reports float32: equal to scikit-learn's float64 within 1e-6."""
    assert metrics["accuracy"] == pytest.approx(accuracy_score(targets, predicted), abs=1e-6)
    balanced = balanced_accuracy_score(targets, predicted)
    assert metrics["balanced_accuracy"] == pytest.approx(balanced, abs=1e-6)
    assert metrics["f1_macro"] == pytest.approx(f1_score(targets, predicted, average="macro"), abs=1e-6)


def test_binary_metrics_equal_sklearn() -> None:
    rng = np.random.default_rng(1)
    targets = rng.integers(0, 2, size=50)
    logits = rng.normal(size=(50, 2)) + np.eye(2)[targets] * 0.8
    task = classification(classes=["neg", "pos"], column="y")
    metrics = task.evaluate(logits, targets)
    probs, predicted = _softmax(logits), logits.argmax(axis=1)
    assert metrics["auc"] == pytest.approx(roc_auc_score(targets, probs[:, 1]), abs=1e-6)
    assert_label_metrics_match_sklearn(metrics, targets, predicted)
    assert "kappa_quadratic" not in metrics


def test_multiclass_and_ordinal_metrics_equal_sklearn() -> None:
    rng = np.random.default_rng(2)
    targets = rng.integers(0, 4, size=80)
    logits = rng.normal(size=(80, 4)) + np.eye(4)[targets] * 0.7
    task = classification(classes=["G1", "G2", "G3", "G4"], ordinal=True)
    metrics = task.evaluate(logits, targets)
    probs, predicted = _softmax(logits), logits.argmax(axis=1)
    auc = roc_auc_score(targets, probs, multi_class="ovr", average="macro")
    assert metrics["auc"] == pytest.approx(auc, abs=1e-6)
    assert_label_metrics_match_sklearn(metrics, targets, predicted)
    kappa = cohen_kappa_score(targets, predicted, weights="quadratic")
    assert metrics["kappa_quadratic"] == pytest.approx(kappa, abs=1e-6)
    assert metrics["mae"] == pytest.approx(np.abs(predicted - targets).mean())
    assert task.notes == []


def test_split_lacking_a_class_gives_nan_auc_with_a_note() -> None:
    rng = np.random.default_rng(3)
    targets = rng.integers(0, 2, size=30)  # class "3" (index 2) never occurs
    logits = rng.normal(size=(30, 3))
    task = classification()
    with np.errstate(all="ignore"):
        metrics = task.evaluate(logits, targets)
    assert math.isnan(metrics["auc"])
    assert any("'3'" in note and "AUC" in note for note in task.notes)
    predicted = logits.argmax(axis=1)
    assert 2 in predicted  # the absent class is predicted: the case where sklearn and torchmetrics differ
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # sklearn: "y_pred contains classes not in y_true"
        expected = balanced_accuracy_score(targets, predicted)
    assert metrics["balanced_accuracy"] == pytest.approx(expected, abs=1e-6)
    assert metrics["f1_macro"] == pytest.approx(f1_score(targets, predicted, average="macro"), abs=1e-6)


def test_classification_predict_outputs() -> None:
    task = classification()
    out = task.predict(np.array([[0.0, 5.0, 1.0], [9.0, 0.0, 0.0]]))
    np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1.0)
    assert out["predicted"].tolist() == [1, 0]
    assert out["predicted_class"].tolist() == ["2", "1"]


# -- survival labels and bins ----------------------------------------------------------------------
def test_survival_usable_reasons() -> None:
    labels = pd.DataFrame(
        {"time": [1.0, 0.0, np.nan, 2.0, "soon", 3.0], "event": [1, 1, 0, 2, 0, True]}, index=patients(6)
    )
    reasons = survival().usable(labels).tolist()
    assert reasons[0] == "" and reasons[5] == ""
    assert "'time' is 0.0" in reasons[1]
    assert "'time' is nan" in reasons[2]
    assert "'event' is 2" in reasons[3]
    assert "'time' is 'soon'" in reasons[4]
    with pytest.raises(HistoError, match="event_column"):
        survival(event_column="death").usable(labels)


def test_bin_edges_come_from_uncensored_training_times_only() -> None:
    rng = np.random.default_rng(4)
    event = rng.random(40) < 0.5
    time = np.where(event, rng.uniform(0.1, 1.0, 40), rng.uniform(5.0, 9.0, 40))  # censored ones are late
    train = pd.DataFrame({"time": time, "event": event.astype(int)}, index=patients(40))
    task = survival(bins=4)
    task.fit(train)
    expected = np.quantile(time[event], [0.25, 0.5, 0.75])
    np.testing.assert_allclose(task.bin_edges, [0.0, *expected, np.inf])
    assert task.bin_edges[-2] < 1.0  # censored times (>= 5) played no part

    valid = pd.DataFrame({"time": [0.05, 100.0], "event": [1, 1]}, index=["V1", "V2"])
    encoded = task.encode(valid)
    assert encoded[:, 0].tolist() == [0.0, 3.0]  # validation data is binned, not used to bin
    np.testing.assert_allclose(task.bin_edges, [0.0, *expected, np.inf])


def test_survival_fit_without_events_is_a_clear_error() -> None:
    labels = pd.DataFrame({"time": [1.0, 2.0], "event": [0, 0]}, index=patients(2))
    with pytest.raises(HistoError, match="no observed event"):
        survival().fit(labels)
    with pytest.raises(RuntimeError, match="fit"):
        survival().encode(labels)


def test_encode_gives_bin_time_event() -> None:
    task = survival(bins=2)
    task.fit(pd.DataFrame({"time": [1.0, 3.0, 9.0], "event": [1, 1, 0]}, index=patients(3)))
    assert task.bin_edges.tolist() == [0.0, 2.0, math.inf]
    encoded = task.encode(pd.DataFrame({"time": [0.5, 2.0, 7.0], "event": [0, 1, 1]}, index=patients(3)))
    assert encoded.tolist() == [[0.0, 0.5, 0.0], [1.0, 2.0, 1.0], [1.0, 7.0, 1.0]]


# -- survival losses -------------------------------------------------------------------------------
def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_nll_loss_matches_hand_computation_with_censoring() -> None:
    logits = [[0.2, -0.5, 1.0], [-1.0, 0.3, 0.0], [0.5, 0.5, -2.0]]
    # patient 0: event in bin 1; patient 1: censored in bin 0; patient 2: censored in bin 2
    targets = torch.tensor([[1, 0.7, 1], [0, 0.1, 0], [2, 3.0, 0]], dtype=torch.float64)
    h = [[_sigmoid(x) for x in row] for row in logits]
    event_term = -(math.log(1 - h[0][0]) + math.log(h[0][1]))  # survived bin 0, died in bin 1
    censored_1 = -math.log(1 - h[1][0])  # survived bin 0
    censored_2 = -math.log((1 - h[2][0]) * (1 - h[2][1]) * (1 - h[2][2]))  # survived bins 0..2
    x = torch.tensor(logits, dtype=torch.float64)
    loss = discrete_nll_loss(x, targets, alpha=0.0)
    assert loss.item() == pytest.approx((event_term + censored_1 + censored_2) / 3, rel=1e-12)
    weighted = discrete_nll_loss(x, targets, alpha=0.4)
    expected = (0.6 * (event_term + censored_1 + censored_2) + 0.4 * event_term) / 3
    assert weighted.item() == pytest.approx(expected, rel=1e-12)

    task = survival(bins=3, alpha=0.4)
    assert task.loss(x, targets).item() == pytest.approx(expected, rel=1e-12)


def test_nll_loss_is_finite_with_saturated_logits() -> None:
    logits = torch.tensor([[80.0, -80.0, 50.0], [-90.0, -90.0, -90.0]], requires_grad=True)
    targets = torch.tensor([[2.0, 1.0, 1.0], [2.0, 1.0, 0.0]])
    loss = discrete_nll_loss(logits, targets)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert loss.item() > 10  # a near-certain wrong answer costs a lot instead of being clamped to 0


def test_cox_loss_matches_hand_computation_with_ties() -> None:
    eta = [0.1, 0.5, -0.3, 0.2, 0.7]
    time = [1.0, 2.0, 2.0, 3.0, 0.5]
    event = [1, 1, 1, 0, 0]
    # Breslow: events at t=1 (risk set: t >= 1 -> 0,1,2,3) and the tie at t=2 (risk set 1,2,3).
    log_r1 = math.log(sum(math.exp(eta[j]) for j in (0, 1, 2, 3)))
    log_r2 = math.log(sum(math.exp(eta[j]) for j in (1, 2, 3)))
    expected = -((eta[0] - log_r1) + (eta[1] - log_r2) + (eta[2] - log_r2)) / 3
    targets = torch.tensor([[0, t, e] for t, e in zip(time, event, strict=True)], dtype=torch.float64)
    loss = cox_partial_likelihood_loss(torch.tensor(eta, dtype=torch.float64).unsqueeze(1), targets)
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def _reference_cox(eta: np.ndarray, time: np.ndarray, event: np.ndarray) -> float:
    """Textbook Breslow partial likelihood: one explicit risk set per event, no sorting tricks."""
    total = 0.0
    for i in np.flatnonzero(event):
        at_risk = time >= time[i]
        total += eta[i] - math.log(np.exp(eta[at_risk]).sum())
    return -total / event.sum()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cox_loss_equals_reference_implementation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 64
    time = rng.integers(1, 12, size=n).astype(np.float64)  # many ties
    event = (rng.random(n) < 0.6).astype(np.float64)
    eta = rng.normal(scale=2.0, size=n)
    x = torch.tensor(eta, requires_grad=True)
    targets = torch.tensor(np.stack([np.zeros(n), time, event], axis=1))
    loss = cox_partial_likelihood_loss(x, targets)
    assert loss.item() == pytest.approx(_reference_cox(eta, time, event), rel=1e-10)
    loss.backward()
    assert torch.isfinite(x.grad).all()


def test_cox_loss_without_events_is_zero_with_a_gradient() -> None:
    x = torch.randn(5, 1, requires_grad=True)
    targets = torch.tensor([[0, float(t), 0] for t in range(1, 6)])
    loss = cox_partial_likelihood_loss(x, targets)
    assert loss.item() == 0.0
    loss.backward()
    assert x.grad is not None and torch.equal(x.grad, torch.zeros_like(x))


def test_cox_loss_is_finite_for_large_log_hazards() -> None:
    x = torch.tensor([[500.0], [-500.0], [300.0]], requires_grad=True)
    targets = torch.tensor([[0, 1.0, 1], [0, 2.0, 1], [0, 3.0, 0]])
    loss = cox_partial_likelihood_loss(x, targets)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


def test_survival_predict_outputs() -> None:
    nll = survival(bins=3)
    out = nll.predict(np.array([[0.0, 0.0, 0.0], [5.0, 5.0, 5.0]]))
    np.testing.assert_allclose(out["survival"][0], [0.5, 0.25, 0.125])
    np.testing.assert_allclose(out["risk"], -out["survival"].sum(axis=1))
    assert out["risk"][1] > out["risk"][0]  # higher hazards, higher risk
    cox = survival(loss="cox")
    np.testing.assert_allclose(cox.predict(np.array([[0.3], [-1.0]]))["risk"], [0.3, -1.0])


def test_survival_losses_accept_half_precision_logits() -> None:
    targets = torch.tensor([[0, 1.0, 1], [1, 2.0, 0], [1, 2.0, 1]])
    logits = torch.tensor([[0.3, -0.2], [1.0, 0.5], [-0.4, 0.1]])
    for loss in (discrete_nll_loss, lambda x, t: cox_partial_likelihood_loss(x[:, :1], t)):
        full = loss(logits, targets)
        half = loss(logits.bfloat16(), targets)
        assert half.dtype == torch.float32
        assert half.item() == pytest.approx(full.item(), abs=0.02)


@pytest.mark.parametrize("loss", ["nll", "cox"])
def test_survival_selection_metrics_are_the_reported_c_index_alone(loss: str) -> None:
    """Per-epoch selection computes Harrell's C-index only, the very value `evaluate` reports."""
    rng = np.random.default_rng(11)
    time = rng.uniform(1, 10, 60)
    event = (rng.random(60) < 0.6).astype(int)
    task = survival(bins=4, loss=loss)
    labels = pd.DataFrame({"time": time, "event": event}, index=patients(60))
    task.fit(labels)
    targets = task.encode(labels)
    logits = rng.normal(size=(60, task.num_outputs))
    full = task.evaluate(logits, targets)
    assert task.selection_metrics(logits, targets, "c_index") == {"c_index": full["c_index"]}
    assert task.selection_metrics(logits, targets, "loss") == {"c_index": full["c_index"]}
    assert task.selection_metrics(logits, targets, "ibs") == full  # what it cannot shortcut it computes


def test_c_index_without_comparable_pairs_is_nan_not_an_error() -> None:
    from histo.plugins.tasks.metrics import harrell_c_index

    # the only event comes after every censoring: no pair can be compared
    assert math.isnan(harrell_c_index(np.array([0.3, 0.1]), np.array([5.0, 1.0]), np.array([1, 0])))
    assert math.isnan(harrell_c_index(np.array([0.3, np.nan]), np.array([1.0, 2.0]), np.array([1, 1])))
    assert harrell_c_index(np.array([0.9, 0.1]), np.array([1.0, 2.0]), np.array([1, 1])) == 1.0


def test_survival_metrics_without_comparable_pairs_say_why() -> None:
    from histo.plugins.tasks.metrics import survival_metrics

    result = survival_metrics(np.array([0.3, 0.1]), np.array([5.0, 1.0]), np.array([1, 0]))
    assert math.isnan(result.metrics["c_index"])
    assert any("no comparable pair" in note for note in result.notes)
