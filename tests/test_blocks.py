"""The public building blocks of `histo.blocks`: masked pooling, attention pooling, loops, checks."""

from __future__ import annotations

import pytest
import torch

from histo.blocks import (
    AttentionPool,
    embedding_dim,
    masked_mean,
    masked_softmax,
    omics_vector,
    per_magnification,
    require_features,
    require_omics,
)
from histo.errors import HistoError
from histo.interfaces import ModelDims

MASK = torch.tensor([[True, True, True, False], [True, False, False, False], [False] * 4])


def test_masked_softmax_ignores_padding_and_empty_rows_give_zeros() -> None:
    scores = torch.randn(3, 4)
    weights = masked_softmax(scores, MASK)
    assert (weights[~MASK] == 0).all()
    torch.testing.assert_close(weights[:2].sum(1), torch.ones(2))
    assert (weights[2] == 0).all()  # an empty bag: zeros, not NaN
    torch.testing.assert_close(weights[0, :3], torch.softmax(scores[0, :3], dim=0))
    # along another axis, with a broadcast mask (queries x keys)
    along = masked_softmax(torch.randn(3, 4, 2), MASK[:, :, None], dim=1)
    torch.testing.assert_close(along[:2].sum(1), torch.ones(2, 2))


def test_masked_mean_counts_real_positions_only() -> None:
    x = torch.randn(3, 4, 5)
    x_noisy = x.masked_fill(~MASK[..., None], 1e6)
    mean = masked_mean(x_noisy, MASK)
    torch.testing.assert_close(mean[0], x[0, :3].mean(0))
    torch.testing.assert_close(mean[1], x[1, 0])
    assert (mean[2] == 0).all()


@pytest.mark.parametrize("gated", [True, False])
def test_attention_pool_is_blind_to_padding(gated: bool) -> None:
    torch.manual_seed(0)
    pool = AttentionPool(8, 6, gated=gated, in_dim=5).eval()
    x = torch.randn(3, 4, 5)
    pooled, weights = pool(x, MASK)
    assert pooled.shape == (3, 8) and weights.shape == (3, 4)
    torch.testing.assert_close(weights[:2].sum(1), torch.ones(2))
    assert (weights[~MASK] == 0).all()
    alone, _ = pool(x[:1, :3], MASK[:1, :3])
    torch.testing.assert_close(alone[0], pooled[0])
    assert pool.output_dim == 8
    assert (pool.attention_u is not None) is gated


def test_per_magnification_follows_the_models_views_and_names_missing_ones() -> None:
    batch = {"features": {"10x": torch.zeros(2, 3, 4), "20x": torch.ones(2, 5, 4)}, "mask": {}}
    batch["mask"] = {m: torch.ones(x.shape[:2], dtype=torch.bool) for m, x in batch["features"].items()}
    sizes = per_magnification(batch, lambda mag, x, mask: (mag, x.shape[1], int(mask.sum())), ["20x", "10x"])
    assert list(sizes) == ["20x", "10x"] and sizes["20x"] == ("20x", 5, 10)
    with pytest.raises(HistoError, match=r"magnification\(s\) \['40x'\]"):
        per_magnification(batch, lambda *_: None, ["40x"])


def test_input_checks_name_the_component_and_the_fix() -> None:
    no_slides = ModelDims(feature_dim=0, omics_groups={"g": 3}, num_outputs=2)
    with pytest.raises(HistoError, match=r"slide encoder 'mine' needs patch features: set the stage's"):
        require_features(no_slides, "slide encoder 'mine'")
    require_omics(no_slides, "omics encoder 'mine'")
    with pytest.raises(HistoError, match=r"fusion 'f' needs an expression table"):
        require_omics({"features": {"10x": torch.zeros(1)}, "omics": {}}, "fusion 'f'")
    require_features({"features": {"10x": torch.zeros(1)}}, "x")


def test_embedding_dim_and_omics_vector() -> None:
    class Tokens(torch.nn.Module):
        output_dim, tokens = 4, True

        def forward(self, omics: dict[str, torch.Tensor]) -> torch.Tensor:
            return torch.stack([omics["a"], omics["b"]], dim=1)

    omics = {"a": torch.ones(2, 4), "b": torch.zeros(2, 4)}
    torch.testing.assert_close(omics_vector(Tokens(), omics), torch.full((2, 4), 0.5))
    assert embedding_dim(Tokens(), "model.omics_encoder") == 4
    with pytest.raises(HistoError, match=r"model.slide_encoder \(Linear\) must .* integer `output_dim`"):
        embedding_dim(torch.nn.Linear(2, 2), "model.slide_encoder")
