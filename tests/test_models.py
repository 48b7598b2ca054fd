from __future__ import annotations

import pytest
import torch

from histo.errors import HistoError
from histo.interfaces import ModelDims
from histo.manager import Plugins
from histo.plugins.training.assemble import build_model
from histo.plugins.training.collate import collate
from histo.plugins.training.config import ModelConfig

DIMS = ModelDims(
    feature_dim=12,
    omics_groups={"tumour": 5, "microenvironment": 7},
    num_outputs=3,
    magnifications=("10x", "20x"),
)


def bag_item(n10: int, n20: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "patient_id": f"p{seed}",
        "target": torch.tensor(1).numpy(),
        "features": {
            "10x": torch.randn(n10, 12, generator=g).numpy(),
            "20x": torch.randn(n20, 12, generator=g).numpy(),
        },
        "coords": {"10x": torch.zeros(n10, 2).numpy(), "20x": torch.zeros(n20, 2).numpy()},
        "omics": {
            "tumour": torch.randn(5, generator=g).numpy(),
            "microenvironment": torch.randn(7, generator=g).numpy(),
        },
    }


def model_config(histo_plugins: Plugins, **parts: object) -> ModelConfig:
    from histo.recipe.loader import _validate_references

    config = ModelConfig.model_validate(parts)
    assert not _validate_references(config, ("model",), [], histo_plugins, {})
    return config


@pytest.mark.parametrize(
    "parts",
    [
        {"slide_encoder": "abmil"},
        {"slide_encoder": "mean"},
        {"omics_encoder": "snn"},
        {"omics_encoder": {"name": "snn", "params": {"per_group": True}}},
        {"omics_encoder": "mlp"},
        {"omics_encoder": "pathway_tokens"},
        {"slide_encoder": "abmil", "omics_encoder": "snn", "fusion": "concat"},
        {"slide_encoder": "mean", "omics_encoder": "pathway_tokens", "fusion": "concat"},
    ],
)
def test_models_handle_ragged_bags(histo_plugins: Plugins, parts: dict) -> None:
    torch.manual_seed(0)
    model = build_model(model_config(histo_plugins, **parts), DIMS).eval()
    batch = collate([bag_item(3, 9, 1), bag_item(6, 2, 2)])
    logits = model(batch)["logits"]
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    # padding must not change a bag's prediction: the first bag alone gives the same logits
    alone = model(collate([bag_item(3, 9, 1)]))["logits"]
    torch.testing.assert_close(alone[0], logits[0], atol=1e-5, rtol=1e-5)
    logits.sum().backward()


def test_attention_is_masked(histo_plugins: Plugins) -> None:
    model = build_model(model_config(histo_plugins, slide_encoder="abmil"), DIMS).eval()
    out = model(collate([bag_item(3, 9, 1), bag_item(6, 2, 2)]))
    attention = out["attention"]["20x"]
    assert torch.allclose(attention.sum(1), torch.ones(2))
    assert (attention[1, 2:] == 0).all()


def test_incomplete_models_are_clear_errors(histo_plugins: Plugins) -> None:
    with pytest.raises(HistoError, match="fusion: concat"):
        build_model(model_config(histo_plugins, slide_encoder="abmil", omics_encoder="snn"), DIMS)
    no_omics = ModelDims(feature_dim=12, omics_groups={}, num_outputs=2, magnifications=("20x",))
    with pytest.raises(HistoError, match="omics:"):
        build_model(model_config(histo_plugins, omics_encoder="snn"), no_omics)
    no_slides = ModelDims(feature_dim=0, omics_groups={"a": 3}, num_outputs=2)
    with pytest.raises(HistoError, match="features:"):
        build_model(model_config(histo_plugins, slide_encoder="abmil"), no_slides)
    with pytest.raises(HistoError, match="at least one"):
        build_model(model_config(histo_plugins), DIMS)


def test_snn_initialisation_is_self_normalising(histo_plugins: Plugins) -> None:
    model = build_model(model_config(histo_plugins, omics_encoder="snn"), DIMS)
    first = model.body.encoder.encoder.blocks[0][0]
    assert abs(float(first.weight.detach().std()) - 1 / 12**0.5) < 0.1
    assert float(first.bias.detach().abs().max()) == 0.0
