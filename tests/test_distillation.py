"""Distillers on fixed inputs against hand computations."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from histo.errors import HistoError
from histo.manager import Plugins
from histo.plugins.method import histo_distillers

SPECS = {spec.name: spec for spec in histo_distillers()}
LN3 = math.log(3.0)
# KL([3/4, 1/4] || [1/2, 1/2]): the teacher's softened distribution against a uniform student
KL_34 = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)


def distiller(name: str, **params: Any) -> Any:
    return SPECS[name].build(params)


def test_softmax_kd_is_scaled_by_t_squared() -> None:
    student = {"view_logits": {"10x": torch.zeros(2, 2)}}
    teacher = {"view_logits": {"10x": torch.tensor([[2 * LN3, 0.0], [2 * LN3, 0.0]])}}  # t / 2 = [ln 3, 0]
    loss = distiller("logit_kd", temperature=2.0, alpha=1.0)(student, teacher)
    assert loss.item() == pytest.approx(4 * KL_34, rel=1e-6)  # batch mean of KL, times T^2 = 4
    loss = distiller("logit_kd", temperature=2.0, alpha=0.01)(student, teacher)
    assert loss.item() == pytest.approx(0.01 * 4 * KL_34, rel=1e-6)
    teacher1 = {"view_logits": {"10x": torch.tensor([[LN3, 0.0], [LN3, 0.0]])}}
    assert distiller("logit_kd", temperature=1.0, alpha=1.0)(student, teacher1).item() == pytest.approx(
        KL_34, rel=1e-6
    )


def test_hazard_kd_is_a_bernoulli_kl_per_bin() -> None:
    # bin 1: sigmoid(ln 3) = 3/4 against 1/2; bin 2: equal (no contribution)
    student = {"view_logits": {"10x": torch.tensor([[0.0, 1.0]])}}
    teacher = {"view_logits": {"10x": torch.tensor([[2 * LN3, 1.0]])}}
    loss = distiller("logit_kd", temperature=2.0, alpha=1.0, logits="hazards")(student, teacher)
    assert loss.item() == pytest.approx(4 * KL_34, rel=1e-6)


def test_subspace_mse_targets_the_teacher_groups_in_order() -> None:
    ones, zeros = torch.ones(3, 2), torch.zeros(3, 2)
    teacher = {
        "view_logits": {"10x": torch.zeros(3, 4)},
        "subspaces": {"10x": {"tumour": ones, "microenvironment": zeros}},
    }
    logits = {"10x": torch.zeros(3, 4)}
    in_order = {"view_logits": logits, "view_embeddings": {"10x": torch.cat([ones, zeros], 1)}}
    swapped = {"view_logits": logits, "view_embeddings": {"10x": torch.cat([zeros, ones], 1)}}
    kd = distiller("subspace_kd", alpha=0.01, beta=0.5)
    assert kd(in_order, teacher).item() == pytest.approx(0.0, abs=1e-7)  # equal logits, equal features
    assert kd(swapped, teacher).item() == pytest.approx(0.5 * 1.0)  # every element off by one


def test_subspace_kd_sums_views_in_both_models_only() -> None:
    g = torch.Generator().manual_seed(0)
    s10, t10 = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    e10 = torch.randn(4, 4, generator=g)
    f_t, f_m = torch.randn(4, 2, generator=g), torch.randn(4, 2, generator=g)
    student = {
        "view_logits": {"10x": s10, "20x": torch.randn(4, 3, generator=g)},
        "view_embeddings": {"10x": e10, "20x": torch.randn(4, 4, generator=g)},
    }
    teacher = {
        "view_logits": {"10x": t10, "5x": torch.randn(4, 3, generator=g)},
        "subspaces": {"10x": {"tumour": f_t, "microenvironment": f_m}, "5x": {"tumour": f_t}},
    }
    p, log_p, log_q = torch.softmax(t10 / 2, 1), torch.log_softmax(t10 / 2, 1), torch.log_softmax(s10 / 2, 1)
    kl = (p * (log_p - log_q)).sum(1).mean()
    mse = ((e10 - torch.cat([f_t, f_m], 1)) ** 2).mean()
    expected = 0.01 * 4 * kl + 0.01 * mse
    assert distiller("subspace_kd")(student, teacher).item() == pytest.approx(expected.item(), rel=1e-5)
    assert distiller("logit_kd")(student, teacher).item() == pytest.approx((0.01 * 4 * kl).item(), rel=1e-5)


def test_gradients_reach_the_student_only() -> None:
    s = torch.randn(2, 3, requires_grad=True)
    t = torch.randn(2, 3, requires_grad=True)
    distiller("logit_kd")({"logits": s}, {"logits": t}).backward()  # no views: the combined logits
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_mismatches_are_explained() -> None:
    def views(view: str, classes: int) -> dict:
        return {"view_logits": {view: torch.zeros(1, classes)}}

    with pytest.raises(HistoError, match="share no view"):
        distiller("subspace_kd")(views("10x", 2), views("20x", 2))
    with pytest.raises(HistoError, match="same task"):
        distiller("logit_kd")(views("10x", 2), views("10x", 3))
    with pytest.raises(HistoError, match="tokens x width"):
        distiller("subspace_kd")(
            {"view_embeddings": {"10x": torch.zeros(1, 6)}},
            {"subspaces": {"10x": {"tumour": torch.zeros(1, 2), "microenvironment": torch.zeros(1, 2)}}},
        )


def test_registered_with_the_default_plugins(histo_plugins: Plugins) -> None:
    registry = histo_plugins.registry("distillers")
    assert {"subspace_kd", "logit_kd"} <= set(registry.names())
    assert registry.build("subspace_kd", {"beta": 0.5}).config.beta == 0.5
