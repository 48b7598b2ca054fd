"""WSI-only slide encoders: one pooling per magnification, embeddings concatenated."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from histo.errors import HistoError
from histo.interfaces import ModelDims

from .configs import AbmilConfig, MeanPoolConfig
from .pooling import masked_mean, masked_softmax


def _require_slides(dims: ModelDims, name: str) -> None:
    if dims.feature_dim <= 0 or not dims.magnifications:
        raise HistoError(f"slide encoder {name!r} needs patch features: set the stage's `features:` section")


class GatedAttentionPool(nn.Module):
    """Gated attention MIL pooling: a_i = softmax(w^T (tanh(V h_i) * sigmoid(U h_i)))."""

    def __init__(self, in_dim: int, hidden: int, attention_dim: int, dropout: float) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.attention_v = nn.Linear(hidden, attention_dim)
        self.attention_u = nn.Linear(hidden, attention_dim)
        self.attention_w = nn.Linear(attention_dim, 1)

    def forward(self, features: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        h = self.project(features)
        gate = torch.tanh(self.attention_v(h)) * torch.sigmoid(self.attention_u(h))
        weights = masked_softmax(self.attention_w(gate).squeeze(-1), mask)
        return torch.einsum("bn,bnd->bd", weights, h), weights


class Abmil(nn.Module):
    def __init__(self, dims: ModelDims, config: AbmilConfig) -> None:
        super().__init__()
        self.magnifications = list(dims.magnifications)
        self.pools = nn.ModuleDict(
            {
                mag: GatedAttentionPool(dims.feature_dim, config.hidden, config.attention_dim, config.dropout)
                for mag in self.magnifications
            }
        )
        self.output_dim = config.hidden * len(self.magnifications)

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        embeddings, attention = [], {}
        for mag in self.magnifications:
            embedding, weights = self.pools[mag](batch["features"][mag], batch["mask"][mag])
            embeddings.append(embedding)
            attention[mag] = weights
        return {"embedding": torch.cat(embeddings, dim=1), "attention": attention}


class MeanPool(nn.Module):
    def __init__(self, dims: ModelDims, config: MeanPoolConfig) -> None:
        super().__init__()
        self.magnifications = list(dims.magnifications)
        self.project = nn.ModuleDict(
            {
                mag: nn.Sequential(
                    nn.Linear(dims.feature_dim, config.hidden), nn.ReLU(), nn.Dropout(config.dropout)
                )
                for mag in self.magnifications
            }
        )
        self.output_dim = config.hidden * len(self.magnifications)

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        pooled = [
            self.project[mag](masked_mean(batch["features"][mag], batch["mask"][mag]))
            for mag in self.magnifications
        ]
        return {"embedding": torch.cat(pooled, dim=1)}


class AbmilBuilder:
    def __init__(self, config: AbmilConfig) -> None:
        self.config = config

    def build(self, dims: ModelDims) -> nn.Module:
        _require_slides(dims, "abmil")
        return Abmil(dims, self.config)


class MeanPoolBuilder:
    def __init__(self, config: MeanPoolConfig) -> None:
        self.config = config

    def build(self, dims: ModelDims) -> nn.Module:
        _require_slides(dims, "mean")
        return MeanPool(dims, self.config)
