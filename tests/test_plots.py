"""Evaluation plots: valid PNGs written atomically, and the numbers they report equal the libraries'."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import confusion_matrix, roc_auc_score
from sksurv.compare import compare_survival
from sksurv.util import Surv

from histo.plugins.evaluation.plots import (
    plot_confusion_matrix,
    plot_kaplan_meier,
    plot_roc,
    read_png_metadata,
)
from histo.plugins.evaluation.risk_groups import risk_group_logrank

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path, min_side: int = 300) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
        assert image.format == "PNG"
        assert min_side <= min(width, height) and max(width, height) <= 4000
        assert np.asarray(image.convert("L")).std() > 5  # something was drawn
    assert 5_000 < path.stat().st_size < 2_000_000
    assert not list(path.parent.glob("*.partial")), "atomic write left a temporary file"


def survival_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    event_time = rng.exponential(np.exp(-risk))
    censor_time = rng.exponential(2.0, size=n)
    return risk, np.minimum(event_time, censor_time), event_time <= censor_time


def test_kaplan_meier_reports_the_sksurv_log_rank_p_value(tmp_path: Path) -> None:
    risk, time, event = survival_data(90, seed=0)
    train_risk = np.random.default_rng(1).normal(loc=0.4, size=150)
    path = plot_kaplan_meier(risk, time, event, tmp_path / "km.png", train_risk=train_risk)
    assert path == tmp_path / "km.png"
    assert_png(path)

    groups = (risk > np.median(train_risk)).astype(int)  # split at the *training* median
    chi2, p_value = compare_survival(Surv.from_arrays(event, time), groups)
    summary = read_png_metadata(path)
    assert summary["logrank_p"] == pytest.approx(p_value, rel=1e-12)
    assert summary["logrank_chi2"] == pytest.approx(chi2, rel=1e-12)
    assert summary["threshold_source"] == "train"
    assert summary["group_sizes"] == [int((groups == 0).sum()), int((groups == 1).sum())]
    assert summary["logrank_p"] < 0.05  # risk drives the simulated times


def test_kaplan_meier_tertiles_of_the_evaluated_set(tmp_path: Path) -> None:
    risk, time, event = survival_data(90, seed=2)
    path = plot_kaplan_meier(risk, time, event, tmp_path / "km3.png", split="tertiles", title="tertiles")
    assert_png(path)
    cuts = np.quantile(risk, [1 / 3, 2 / 3])
    groups = (risk > cuts[0]).astype(int) + (risk > cuts[1]).astype(int)
    _, p_value = compare_survival(Surv.from_arrays(event, time), groups)
    summary = read_png_metadata(path)
    assert summary["logrank_p"] == pytest.approx(p_value, rel=1e-12)
    assert summary["group_sizes"] == [30, 30, 30]
    assert summary["threshold_source"] == "evaluated"


def test_kaplan_meier_with_one_populated_group_still_draws(tmp_path: Path) -> None:
    risk, time, event = survival_data(20, seed=3)
    path = plot_kaplan_meier(risk, time, event, tmp_path / "km.png", train_risk=risk + 100.0)
    assert_png(path)
    assert math.isnan(read_png_metadata(path)["logrank_p"])
    assert math.isnan(risk_group_logrank(risk, time, event, train_risk=risk + 100.0).p_value)


def test_plot_replaces_an_existing_file(tmp_path: Path) -> None:
    risk, time, event = survival_data(40, seed=4)
    target = tmp_path / "plots" / "km.png"
    target.parent.mkdir()
    target.write_bytes(b"stale")
    plot_kaplan_meier(risk, time, event, target)
    assert_png(target)


def test_roc_multiclass_reports_one_vs_rest_aucs(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    targets = rng.integers(0, 3, size=120)
    probabilities = rng.dirichlet(np.ones(3), size=120) + np.eye(3)[targets] * 0.5
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    path = plot_roc(probabilities, targets, ["LUAD", "LUSC", "normal"], tmp_path / "roc.png")
    assert_png(path)
    aucs = read_png_metadata(path)["auc"]
    for k, name in enumerate(["LUAD", "LUSC", "normal"]):
        assert aucs[name] == pytest.approx(roc_auc_score(targets == k, probabilities[:, k]), rel=1e-12)


def test_roc_binary_and_absent_class(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    targets = rng.integers(0, 2, size=50)
    positive = np.clip(0.5 + 0.3 * (targets - 0.5) + rng.normal(scale=0.2, size=50), 0, 1)
    probabilities = np.stack([1 - positive, positive], axis=1)
    binary = plot_roc(probabilities, targets, ["neg", "pos"], tmp_path / "roc2.png")
    assert_png(binary)
    assert read_png_metadata(binary)["auc"] == {"pos": pytest.approx(roc_auc_score(targets, positive))}

    three = np.concatenate([probabilities * 0.9, np.full((50, 1), 0.1)], axis=1)
    path = plot_roc(three, targets, ["a", "b", "c"], tmp_path / "roc3.png")
    assert_png(path)
    aucs = read_png_metadata(path)["auc"]
    assert math.isnan(aucs["c"]) and math.isfinite(aucs["a"])


def test_confusion_matrix_counts_equal_sklearn(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    targets = rng.integers(0, 4, size=100)
    predicted = np.where(rng.random(100) < 0.6, targets, rng.integers(0, 4, size=100))
    targets[targets == 3] = 2  # class "G4" never true: its row is empty, not a division by zero
    names = ["G1", "G2", "G3", "G4"]
    path = plot_confusion_matrix(targets, predicted, names, tmp_path / "cm.png", title="grade")
    assert_png(path)
    summary = read_png_metadata(path)
    assert summary["classes"] == names
    np.testing.assert_array_equal(summary["counts"], confusion_matrix(targets, predicted, labels=range(4)))


def test_metadata_reader_rejects_foreign_png(tmp_path: Path) -> None:
    path = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(path)
    with pytest.raises(ValueError, match=r"plain\.png"):
        read_png_metadata(path)
