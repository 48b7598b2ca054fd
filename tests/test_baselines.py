"""The comparison baselines (TransMIL, Pathomic Fusion, MCAT) on small generated ragged batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydantic
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from histo.errors import HistoError
from histo.interfaces import ModelDims
from histo.manager import Plugins
from histo.plugins.baselines.configs import McatConfig, TransMilConfig
from histo.plugins.baselines.nystrom import nystrom_attention
from histo.plugins.baselines.pathomic import kronecker
from histo.plugins.baselines.transmil import PPEG, square_tokens
from histo.plugins.training.assemble import build_model
from histo.plugins.training.collate import collate
from histo.plugins.training.config import ModelConfig

DIMS = ModelDims(
    feature_dim=12,
    omics_groups={"tumour": 5, "microenvironment": 7},
    num_outputs=3,
    magnifications=("10x", "20x"),
)
SMALL_TRANSMIL = {"dim": 16, "heads": 4, "landmarks": 4, "residual_kernel": 5}
SMALL_MCAT = {"dim": 16, "heads": 2, "feedforward": 32, "bilinear_scale": 2}


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


MODELS: dict[str, dict[str, Any]] = {
    "transmil": {"slide_encoder": {"name": "transmil", "params": SMALL_TRANSMIL}},
    "transmil_exact": {"slide_encoder": {"name": "transmil", "params": {**SMALL_TRANSMIL, "landmarks": 64}}},
    "pathomic": {"slide_encoder": "abmil", "omics_encoder": "snn", "fusion": "pathomic"},
    "pathomic_ungated_tokens": {
        "slide_encoder": {"name": "transmil", "params": SMALL_TRANSMIL},
        "omics_encoder": "pathway_tokens",
        "fusion": {
            "name": "pathomic",
            "params": {"gate_omics": False, "bilinear_gate": False, "skip": False},
        },
    },
    "mcat": {"fusion": {"name": "mcat", "params": SMALL_MCAT}},
    "mcat_bilinear": {"fusion": {"name": "mcat", "params": {**SMALL_MCAT, "fusion": "bilinear"}}},
    "mcat_snn_tokens": {
        "omics_encoder": {"name": "snn", "params": {"per_group": True}},
        "fusion": {"name": "mcat", "params": SMALL_MCAT},
    },
}
# ragged bags, one magnification empty; bag 0 gives TransMIL squares of 2x2 and 3x3, bag 1 of 6x6 and 2x2
BAGS = [(3, 9, 1), (30, 4, 2), (7, 0, 3)]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_ragged_bags_give_padding_independent_outputs(histo_plugins: Plugins, name: str) -> None:
    torch.manual_seed(0)
    model = build_model(model_config(histo_plugins, **MODELS[name]), DIMS).eval()
    with torch.no_grad():
        together = model(collate([bag_item(*bag) for bag in BAGS]))
        assert together["logits"].shape == (3, 3)
        assert torch.isfinite(together["logits"]).all()
        for i, bag in enumerate(BAGS):
            alone = model(collate([bag_item(*bag)]))
            torch.testing.assert_close(alone["logits"][0], together["logits"][i], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(alone["embedding"][0], together["embedding"][i], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_gradients_reach_every_parameter(histo_plugins: Plugins, name: str) -> None:
    torch.manual_seed(0)
    model = build_model(model_config(histo_plugins, **MODELS[name]), DIMS).train()
    logits = model(collate([bag_item(*bag) for bag in BAGS[:2]]))["logits"]
    (logits * torch.randn_like(logits)).sum().backward()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{parameter_name} gets no gradient"
        assert torch.isfinite(parameter.grad).all(), parameter_name
        assert parameter.grad.abs().sum() > 0, f"{parameter_name} gets a zero gradient"


def test_transmil_gives_one_embedding_per_magnification(histo_plugins: Plugins) -> None:
    model = build_model(model_config(histo_plugins, **MODELS["transmil"]), DIMS).eval()
    assert model.body.output_dim == 2 * SMALL_TRANSMIL["dim"]
    empty = model.body.branches["20x"](torch.zeros(1, 1, 12), torch.zeros(1, 1, dtype=torch.bool))
    assert empty.shape == (1, SMALL_TRANSMIL["dim"]) and torch.isfinite(empty).all()  # class token alone


def test_square_tokens_repeat_the_first_tokens_in_bag_order() -> None:
    h = torch.arange(1, 8, dtype=torch.float32)[None, :, None].repeat(2, 1, 1)  # tokens 1..7
    mask = torch.tensor([[True] * 5 + [False] * 2, [True] * 7])
    tokens, valid, side = square_tokens(h, mask)
    assert side.tolist() == [3, 3] and tokens.shape == (2, 9, 1) and valid.all()
    assert tokens[0, :, 0].tolist() == [1, 2, 3, 4, 5, 1, 2, 3, 4]
    assert tokens[1, :, 0].tolist() == [1, 2, 3, 4, 5, 6, 7, 1, 2]
    # real patches need not come first: the mask decides, the order is kept
    tokens, _, side = square_tokens(h[:1], torch.tensor([[False, True, False, True, True, False, False]]))
    assert side.tolist() == [2] and tokens[0, :, 0].tolist() == [2, 4, 5, 2]


def test_ppeg_convolves_each_bag_as_its_own_square() -> None:
    torch.manual_seed(0)
    ppeg = PPEG(4)
    small, large = torch.randn(1, 4, 4), torch.randn(1, 25, 4)  # 2x2 and 5x5 squares
    padded = torch.zeros(2, 25, 4)
    padded[0, :4], padded[1] = small[0], large[0]
    valid = torch.zeros(2, 25, dtype=torch.bool)
    valid[0, :4], valid[1] = True, True
    out = ppeg(padded, valid, torch.tensor([2, 5]))

    def reference(tokens: torch.Tensor, side: int) -> torch.Tensor:  # the original: reshape in bag order
        grid = tokens.transpose(1, 2).reshape(1, 4, side, side)
        grid = grid + sum(conv(grid) for conv in ppeg.convs)
        return grid.flatten(2).transpose(1, 2)

    torch.testing.assert_close(out[0, :4], reference(small, 2)[0])
    torch.testing.assert_close(out[1], reference(large, 5)[0])
    assert (out[0, 4:] == 0).all()


def exact_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v


def test_nystrom_attention_approaches_softmax_attention_as_landmarks_reach_n() -> None:
    torch.manual_seed(0)
    n = 16
    q, k, v = (torch.randn(2, 3, n, 8) for _ in range(3))
    mask = torch.ones(2, n, dtype=torch.bool)
    exact = exact_attention(q, k, v)

    def error(landmarks: int, iterations: int) -> float:
        return float((nystrom_attention(q, k, v, mask, landmarks, iterations) - exact).abs().max())

    assert error(n, 20) < 1e-4 and error(2 * n, 20) < 1e-4  # every token its own landmark: exact
    assert error(n, 6) < 0.05  # the original's 6 pseudo-inverse iterations: close
    assert error(n // 4, 6) > 10 * error(n, 20)  # fewer landmarks than tokens: an approximation


def test_nystrom_attention_ignores_padding() -> None:
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 10, 4) for _ in range(3))
    mask = torch.tensor([[True, False, True, True, False, True, True, True, False, True]])
    real = mask[0].nonzero().squeeze(1)
    exact = exact_attention(q[:, :, real], k[:, :, real], v[:, :, real])
    out = nystrom_attention(q, k, v, mask, landmarks=len(real), iterations=20)
    torch.testing.assert_close(out[:, :, real], exact, atol=1e-4, rtol=1e-4)
    assert (out[:, :, ~mask[0]] == 0).all()
    # fewer landmarks: still the same result as the real tokens alone
    alone = nystrom_attention(
        q[:, :, real], k[:, :, real], v[:, :, real], torch.ones(1, 7, dtype=torch.bool), 3
    )
    torch.testing.assert_close(nystrom_attention(q, k, v, mask, 3)[:, :, real], alone, atol=1e-5, rtol=1e-4)


class LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an operation produces."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        for value in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(value, torch.Tensor):
                self.largest = max(self.largest, value.numel())
        return out


def test_nystrom_attention_memory_is_linear_in_the_bag_size() -> None:
    n, heads, head_dim, landmarks = 4000, 2, 4, 8
    q, k, v = (torch.randn(1, heads, n, head_dim) for _ in range(3))
    with LargestTensor() as tracker:
        nystrom_attention(q, k, v, torch.ones(1, n, dtype=torch.bool), landmarks)
    assert tracker.largest <= heads * n * max(landmarks, head_dim) * 2, tracker.largest  # never n x n


def test_kronecker_product_keeps_the_unimodal_terms() -> None:
    a, b = torch.randn(2, 3), torch.randn(2, 5)
    fused = kronecker(a, b)
    assert fused.shape == (2, (3 + 1) * (5 + 1))
    grid = fused.view(2, 4, 6)
    torch.testing.assert_close(grid[:, :3, :5], a[:, :, None] * b[:, None, :])
    torch.testing.assert_close(grid[:, 3, :5], b)
    torch.testing.assert_close(grid[:, :3, 5], a)
    assert (grid[:, 3, 5] == 1).all()


def test_pathomic_fuses_the_recipe_encoders(histo_plugins: Plugins) -> None:
    parts = {
        "slide_encoder": "abmil",
        "omics_encoder": "snn",
        "fusion": {"name": "pathomic", "params": {"slide_dim": 6, "omics_dim": 10, "output_dim": 20}},
    }
    model = build_model(model_config(histo_plugins, **parts), DIMS).eval()
    fusion = model.body.fusion
    assert fusion.encoder1[0].in_features == (6 + 1) * (10 + 1)
    assert fusion.encoder2[0].in_features == 20 + 6 + 10 + 2  # the skip connection
    assert model.body.output_dim == 20 and model.head.in_features == 20
    out = model(collate([bag_item(3, 9, 1), bag_item(6, 2, 2)]))
    assert out["embedding"].shape == (2, 20)
    assert set(out["attention"]) == {"10x", "20x"}  # the slide encoder's heatmaps are kept


def test_mcat_attention_rows_sum_to_one_over_real_patches(histo_plugins: Plugins) -> None:
    model = build_model(model_config(histo_plugins, **MODELS["mcat"]), DIMS).eval()
    batch = collate([bag_item(*bag) for bag in BAGS])
    attention = model(batch)["attention"]
    assert set(attention) == {"10x", "20x"}
    for mag, weights in attention.items():
        mask = batch["mask"][mag]
        assert weights.shape == (3, 2, mask.shape[1])  # [B, groups, N]
        assert (weights[~mask[:, None, :].expand_as(weights)] == 0).all()
        expected = mask.any(1).float()[:, None].expand(3, 2)  # an empty bag attends nowhere
        torch.testing.assert_close(weights.sum(-1), expected)


def test_incomplete_baselines_are_clear_errors(histo_plugins: Plugins) -> None:
    with pytest.raises(HistoError, match=r"model\.omics_encoder"):
        build_model(model_config(histo_plugins, slide_encoder="abmil", fusion="pathomic"), DIMS)
    with pytest.raises(HistoError, match=r"model\.slide_encoder and model\.omics_encoder"):
        build_model(model_config(histo_plugins, fusion="pathomic"), DIMS)
    with pytest.raises(HistoError, match="per_group: true"):
        build_model(model_config(histo_plugins, omics_encoder="snn", fusion="mcat"), DIMS)
    with pytest.raises(HistoError, match=r"remove model\.slide_encoder"):
        build_model(model_config(histo_plugins, slide_encoder="abmil", fusion="mcat"), DIMS)
    no_omics = ModelDims(feature_dim=12, omics_groups={}, num_outputs=2, magnifications=("20x",))
    with pytest.raises(HistoError, match="omics:"):
        build_model(model_config(histo_plugins, fusion="mcat"), no_omics)
    no_slides = ModelDims(feature_dim=0, omics_groups={"a": 3}, num_outputs=2)
    with pytest.raises(HistoError, match="features:"):
        build_model(model_config(histo_plugins, slide_encoder="transmil"), no_slides)
    with pytest.raises(HistoError, match="features:"):
        build_model(model_config(histo_plugins, fusion="mcat"), no_slides)


def test_configs_reject_inconsistent_shapes() -> None:
    with pytest.raises(pydantic.ValidationError, match="multiple of heads"):
        TransMilConfig(dim=30, heads=8)
    with pytest.raises(pydantic.ValidationError, match="odd"):
        TransMilConfig(residual_kernel=32)
    with pytest.raises(pydantic.ValidationError, match="multiple of heads"):
        McatConfig(dim=20, heads=8)


def test_baselines_are_registered_under_their_kinds(histo_plugins: Plugins) -> None:
    assert "transmil" in histo_plugins.registry("slide_encoders")
    fusions = histo_plugins.registry("fusion_strategies")
    assert "pathomic" in fusions and "mcat" in fusions
    assert not [f for f in histo_plugins.failures if f.plugin == "baselines"]


def write_bags(tmp_path: Path, patients: int = 12) -> tuple[Path, Path, Path]:
    """Feature bags at two magnifications and an omics table, both shifted by the label, and a cohort."""
    import h5py

    rng = np.random.default_rng(0)
    rows, omics = [], []
    for mag in ("10x", "20x"):
        (tmp_path / "bags" / "features" / mag).mkdir(parents=True)
    for i in range(patients):
        label = i % 2
        for mag, n in (("10x", 3 + i % 5), ("20x", 6 + i % 9)):
            with h5py.File(tmp_path / "bags" / "features" / mag / f"S{i:02d}.h5", "w") as h5:
                h5["features"] = (rng.normal(size=(n, 8)) + label).astype(np.float32)
                h5["coords"] = rng.integers(0, 5000, size=(n, 2))
        rows.append({"patient_id": f"P{i:02d}", "slide_id": f"S{i:02d}.svs", "diagnosis": "ab"[label]})
        omics.append({"patient_id": f"P{i:02d}", **{f"G{g}": rng.normal() + label for g in range(5)}})
    pd.DataFrame(rows).to_csv(tmp_path / "cohort.csv", index=False)
    pd.DataFrame(omics).to_csv(tmp_path / "omics.csv", index=False)
    return tmp_path / "bags", tmp_path / "cohort.csv", tmp_path / "omics.csv"


STAGE = """\
  {name}:
    stage: train
    params:
      cohort: {{table: {cohort}, label_column: diagnosis}}
      features: {{folder: {bags}}}
      omics: {{table: {omics}}}
      task: {{name: classification, params: {{column: diagnosis, classes: [a, b]}}}}
      model: {model}
      splits: {{folds: 2, stratify: label}}
      training: {{epochs: 2, batch_size: 4, selection: {{protocol: holdout}}}}
"""


@pytest.mark.slow
def test_baselines_train_end_to_end(tmp_path: Path) -> None:
    from histo.cli import main

    bags, cohort, omics = write_bags(tmp_path)
    models = {
        "transmil": "{slide_encoder: {name: transmil, params: {dim: 16, heads: 2, landmarks: 4}}}",
        "pathomic": "{slide_encoder: abmil, omics_encoder: snn, fusion: pathomic}",
        "mcat": "{fusion: {name: mcat, params: {dim: 16, heads: 2, feedforward: 32}}}",
    }
    stages = "".join(
        STAGE.format(name=name, model=model, cohort=cohort, bags=bags, omics=omics)
        for name, model in models.items()
    )
    recipe = tmp_path / "baselines.yaml"
    recipe.write_text("seed: 1\nstages:\n" + stages)
    assert main(["run", str(recipe), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    for name in models:
        predictions = pd.read_csv(tmp_path / "run" / "stages" / name / "predictions.csv")
        assert len(predictions) == 12 and predictions[["prob_a", "prob_b"]].notna().all().all()
