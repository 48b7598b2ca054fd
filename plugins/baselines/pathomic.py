"""Pathomic Fusion (Chen et al., IEEE TMI 2020): each modality's embedding passes a gated unit whose gate
is computed from both modalities, the two gated vectors (each extended with a constant 1, so the product
keeps the unimodal terms) are fused by their Kronecker product, then encoded, with a skip connection.

The histology embedding comes from the recipe's slide encoder (e.g. abmil) and the omics embedding from
its omics encoder (e.g. snn); MCAT's bilinear late fusion reuses `GatedBilinearFusion`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from histo.blocks import embedding_dim, omics_vector
from histo.errors import HistoError
from histo.interfaces import ModelDims, OmicsEncoder, SlideEncoder

from .configs import PathomicConfig


def kronecker(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample Kronecker product of [a, 1] [B, p] and [b, 1] [B, q] -> [B, (p+1)(q+1)]."""
    ones = a.new_ones(a.shape[0], 1)
    a1, b1 = torch.cat([a, ones], dim=1), torch.cat([b, ones], dim=1)
    return torch.einsum("bi,bj->bij", a1, b1).flatten(1)


def init_linear(module: nn.Module) -> None:
    """Weights N(0, 1/sqrt(fan_in)), biases 0, on every Linear (the original's "max" initialisation)."""
    for layer in module.modules():
        if type(layer) is nn.Linear:
            nn.init.normal_(layer.weight, std=1 / math.sqrt(layer.in_features))
            nn.init.zeros_(layer.bias)


class GatedUnit(nn.Module):
    """o = MLP(sigmoid(z(own, other)) * relu(W own)); without a gate o = MLP(own)."""

    def __init__(
        self, own: int, other: int, out: int, gate: bool, bilinear: bool, dropout: float, own_first: bool
    ) -> None:
        super().__init__()
        self.gate = gate
        self.own_first = own_first  # the bilinear form takes (histology, omics) in that order
        self.bilinear = bilinear
        if gate:
            self.hidden = nn.Sequential(nn.Linear(own, out), nn.ReLU())
            first, second = (own, other) if own_first else (other, own)
            self.score: nn.Bilinear | nn.Linear = (
                nn.Bilinear(first, second, out) if bilinear else nn.Linear(own + other, out)
            )
        self.output = nn.Sequential(nn.Linear(out if gate else own, out), nn.ReLU(), nn.Dropout(dropout))

    def forward(self, own: Tensor, other: Tensor) -> Tensor:
        if not self.gate:
            return self.output(own)
        first, second = (own, other) if self.own_first else (other, own)
        if self.bilinear:  # autocast leaves nn.Bilinear alone on some devices: match its weight's dtype
            dtype = self.score.weight.dtype
            score = self.score(first.to(dtype), second.to(dtype))
        else:
            score = self.score(torch.cat([first, second], dim=1))
        return self.output(torch.sigmoid(score) * self.hidden(own))


class GatedBilinearFusion(nn.Module):
    """Gated units for both modalities, Kronecker product, dropout, encoder, skip, encoder."""

    def __init__(
        self,
        slide_in: int,
        omics_in: int,
        slide_dim: int,
        omics_dim: int,
        output_dim: int,
        dropout: float,
        *,
        gate_slide: bool = True,
        gate_omics: bool = True,
        bilinear_gate: bool = True,
        skip: bool = True,
    ) -> None:
        super().__init__()
        self.slide_unit = GatedUnit(slide_in, omics_in, slide_dim, gate_slide, bilinear_gate, dropout, True)
        self.omics_unit = GatedUnit(omics_in, slide_in, omics_dim, gate_omics, bilinear_gate, dropout, False)
        self.post_fusion_dropout = nn.Dropout(dropout)
        self.kronecker_dim = (slide_dim + 1) * (omics_dim + 1)
        self.encoder1 = nn.Sequential(
            nn.Linear(self.kronecker_dim, output_dim), nn.ReLU(), nn.Dropout(dropout)
        )
        self.skip = skip
        skip_dim = slide_dim + omics_dim + 2 if skip else 0
        self.encoder2 = nn.Sequential(
            nn.Linear(output_dim + skip_dim, output_dim), nn.ReLU(), nn.Dropout(dropout)
        )
        self.output_dim = output_dim
        init_linear(self)

    def forward(self, slide: Tensor, omics: Tensor) -> Tensor:
        o1 = self.slide_unit(slide, omics)
        o2 = self.omics_unit(omics, slide)
        fused = self.encoder1(self.post_fusion_dropout(kronecker(o1, o2)))
        if self.skip:
            ones = o1.new_ones(o1.shape[0], 1)
            fused = torch.cat([fused, o1, ones, o2, ones], dim=1)
        return self.encoder2(fused)


class PathomicFusion(nn.Module):
    def __init__(self, slide: nn.Module, omics: nn.Module, config: PathomicConfig) -> None:
        super().__init__()
        self.slide = slide
        self.omics = omics
        self.fusion = GatedBilinearFusion(
            embedding_dim(slide, "model.slide_encoder"),
            embedding_dim(omics, "model.omics_encoder"),
            config.slide_dim,
            config.omics_dim,
            config.output_dim,
            config.dropout,
            gate_slide=config.gate_slide,
            gate_omics=config.gate_omics,
            bilinear_gate=config.bilinear_gate,
            skip=config.skip,
        )
        self.output_dim = config.output_dim

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        slide_out = self.slide(batch)
        omics_embedding = omics_vector(self.omics, batch["omics"])
        return {**slide_out, "embedding": self.fusion(slide_out["embedding"], omics_embedding)}


class PathomicBuilder:
    def __init__(self, config: PathomicConfig) -> None:
        self.config = config

    def build(
        self, dims: ModelDims, slide_encoder: SlideEncoder | None, omics_encoder: OmicsEncoder | None
    ) -> nn.Module:
        if slide_encoder is None or omics_encoder is None:
            missing = [
                key
                for key, builder in (
                    ("model.slide_encoder", slide_encoder),
                    ("model.omics_encoder", omics_encoder),
                )
                if builder is None
            ]
            raise HistoError(
                f"fusion 'pathomic' fuses a slide and an omics embedding: add {' and '.join(missing)} to the "
                "recipe (e.g. `slide_encoder: abmil`, `omics_encoder: snn`)"
            )
        slide, omics = slide_encoder.build(dims), omics_encoder.build(dims)
        return PathomicFusion(slide, omics, self.config)
