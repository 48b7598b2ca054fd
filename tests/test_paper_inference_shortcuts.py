"""Inference shortcuts of the teacher: they must give what the full computation gives, and step aside
whenever it would differ (training with dropout, weights that changed)."""

from __future__ import annotations

import math

import pytest
import torch

from histo.plugins.paper.deformable import BIAS_KNOTS, _bias_mlp, _knot_pairs
from histo.plugins.paper.teacher import SubspaceReadout


@pytest.fixture
def readout() -> SubspaceReadout:
    torch.manual_seed(0)
    return SubspaceReadout(dim=32, heads=4, dropout=0.25)


def full_attention(module: SubspaceReadout, fused: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    query, key = module.norm(fused), module.norm(group)
    return module.attention(query, key, key, need_weights=False)[0]


def test_one_key_readout_equals_the_attention_in_eval(readout: SubspaceReadout) -> None:
    readout.eval()
    fused, group = torch.randn(3, 50, 32), torch.randn(3, 1, 32)
    mask = torch.rand(3, 50) > 0.2
    shortcut = readout._single_key(readout.norm(group)).expand(3, 50, 32)
    torch.testing.assert_close(shortcut, full_attention(readout, fused, group), rtol=1e-5, atol=1e-6)
    expected = torch.tanh(
        readout.pool(
            (readout.norm(fused + full_attention(readout, fused, group)) * mask[..., None]).sum(1)
            / mask.sum(1, keepdim=True)
        )
    )
    torch.testing.assert_close(readout(fused, group, mask), expected, rtol=1e-5, atol=1e-6)


def test_training_with_dropout_keeps_the_attention(
    readout: SubspaceReadout, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dropout on a single weight of 1 zeroes or scales it per query: not a constant, so no shortcut."""
    readout.train()
    monkeypatch.setattr(SubspaceReadout, "_single_key", lambda *_: pytest.fail("shortcut taken in training"))
    readout(torch.randn(2, 20, 32), torch.randn(2, 1, 32), torch.ones(2, 20, dtype=torch.bool))


def test_knot_values_are_reused_without_autograd_and_redone_when_weights_change() -> None:
    torch.manual_seed(0)
    mlp = _bias_mlp(1, 16, 4, last_bias=False)
    limit, like = math.log1p(2.5), torch.zeros(1)
    knots = torch.linspace(-limit, limit, BIAS_KNOTS).unsqueeze(-1)
    with torch.inference_mode():
        first = _knot_pairs(mlp, limit, like)
        assert _knot_pairs(mlp, limit, like) is first  # reused
        assert _knot_pairs(mlp, limit * 2, like) is not first  # another reach: computed again
    with torch.no_grad():
        mlp[0].weight.add_(0.5)  # what an optimiser step does
        after = _knot_pairs(mlp, limit, like)
    assert not torch.equal(after, first)
    values = mlp(knots).detach()
    torch.testing.assert_close(after[:, :4], values)
    torch.testing.assert_close(after[:-1, 4:], values[1:] - values[:-1])  # the slope to the next knot
    assert not after[-1, 4:].any()
    with_grad = _knot_pairs(mlp, limit, like)  # training: always computed, with its graph
    assert with_grad.requires_grad and with_grad is not after
