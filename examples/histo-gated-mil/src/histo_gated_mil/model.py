"""Multi-branch gated-attention MIL (Ilse et al. 2018; several branches as in CLAM-MB, Lu et al. 2021).

Per magnification: patch features [B, N, D] -> Linear + ReLU + Dropout -> `branches` gated attention
poolings, each giving one [B, hidden] vector; the vectors of every branch and magnification are
concatenated into the embedding, to which histo adds the task's head. The attention returned for
heatmaps is the branches' mean.

The masked softmax, the pooling and the loop over magnifications come from `histo.blocks`, so padded
patches (bags are padded to the longest in a batch) never change a bag's output.
"""

from __future__ import annotations

from typing import Any

import torch
from histo.blocks import AttentionPool, per_magnification, require_features
from histo.interfaces import ModelDims
from torch import Tensor, nn

from .config import GatedMilConfig


class GatedMil(nn.Module):
    def __init__(self, dims: ModelDims, config: GatedMilConfig) -> None:
        super().__init__()
        require_features(dims, "slide encoder 'gated_mil'")  # a clear error for an omics-only run
        self.magnifications = list(dims.magnifications)
        self.project = nn.ModuleDict(
            {
                mag: nn.Sequential(
                    nn.Linear(dims.feature_dim, config.hidden), nn.ReLU(), nn.Dropout(config.dropout)
                )
                for mag in self.magnifications
            }
        )
        self.pools = nn.ModuleDict(
            {
                mag: nn.ModuleList(
                    AttentionPool(config.hidden, config.attention_dim, gated=True)
                    for _ in range(config.branches)
                )
                for mag in self.magnifications
            }
        )
        self.output_dim = config.hidden * config.branches * len(self.magnifications)  # histo reads this

    def _pool(self, mag: str, features: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        h = self.project[mag](features)
        pooled, weights = zip(*(pool(h, mask) for pool in self.pools[mag]), strict=True)
        return torch.cat(pooled, dim=1), torch.stack(weights).mean(dim=0)

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        views = per_magnification(batch, self._pool, self.magnifications)
        return {
            "embedding": torch.cat([views[mag][0] for mag in self.magnifications], dim=1),
            "attention": {mag: views[mag][1] for mag in self.magnifications},
        }
