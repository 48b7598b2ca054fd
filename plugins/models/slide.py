"""WSI-only slide encoders: one pooling per magnification, embeddings concatenated."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from histo.blocks import AttentionPool, masked_mean, per_magnification, require_features
from histo.interfaces import ModelDims

from .configs import AbmilConfig, MeanPoolConfig


class GatedAttentionPool(AttentionPool):
    """Gated attention MIL pooling over patches projected from `in_dim` to `hidden`."""

    def __init__(self, in_dim: int, hidden: int, attention_dim: int, dropout: float) -> None:
        super().__init__(hidden, attention_dim, gated=True, in_dim=in_dim, dropout=dropout)


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
        pooled = per_magnification(batch, lambda mag, x, mask: self.pools[mag](x, mask), self.magnifications)
        return {
            "embedding": torch.cat([embedding for embedding, _ in pooled.values()], dim=1),
            "attention": {mag: weights for mag, (_, weights) in pooled.items()},
        }


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
        pooled = per_magnification(
            batch, lambda mag, x, mask: self.project[mag](masked_mean(x, mask)), self.magnifications
        )
        return {"embedding": torch.cat(list(pooled.values()), dim=1)}


class AbmilBuilder:
    def __init__(self, config: AbmilConfig) -> None:
        self.config = config

    def build(self, dims: ModelDims) -> nn.Module:
        require_features(dims, "slide encoder 'abmil'")
        return Abmil(dims, self.config)


class MeanPoolBuilder:
    def __init__(self, config: MeanPoolConfig) -> None:
        self.config = config

    def build(self, dims: ModelDims) -> nn.Module:
        require_features(dims, "slide encoder 'mean'")
        return MeanPool(dims, self.config)
