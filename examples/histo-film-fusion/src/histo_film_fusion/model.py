"""FiLM fusion (Perez et al. 2018) for slides and transcriptomes.

The omics encoder's embedding o [B, E] predicts, per magnification, a scale and a shift for every
channel of the projected patch features h [B, N, H]: h' = h * (1 + gamma(o)) + beta(o). A gated
attention pooling then reads the modulated patches, so which patches matter depends on the
patient's expression profile. The pooled vectors of every magnification, o itself and (when the
recipe names one) a slide encoder's embedding are concatenated and projected to `output_dim`.

gamma and beta start at zero: at initialisation the fusion is plain attention pooling beside the
omics embedding, and training learns how much the transcriptome should steer it.
"""

from __future__ import annotations

from typing import Any

import torch
from histo.blocks import AttentionPool, embedding_dim, omics_vector, per_magnification, require_features
from histo.interfaces import ModelDims
from torch import Tensor, nn

from .config import FilmConfig


class FilmFusion(nn.Module):
    def __init__(
        self, dims: ModelDims, omics: nn.Module, slide: nn.Module | None, config: FilmConfig
    ) -> None:
        super().__init__()
        require_features(dims, "fusion 'film'")
        self.magnifications = list(dims.magnifications)
        self.omics = omics
        self.slide = slide
        omics_dim = embedding_dim(omics, "model.omics_encoder")
        slide_dim = embedding_dim(slide, "model.slide_encoder") if slide is not None else 0
        self.project = nn.ModuleDict(
            {
                mag: nn.Sequential(
                    nn.Linear(dims.feature_dim, config.hidden), nn.ReLU(), nn.Dropout(config.dropout)
                )
                for mag in self.magnifications
            }
        )
        self.film = nn.ModuleDict(
            {mag: nn.Linear(omics_dim, 2 * config.hidden) for mag in self.magnifications}
        )
        for layer in self.film.values():
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.pools = nn.ModuleDict(
            {
                mag: AttentionPool(config.hidden, config.attention_dim, gated=True)
                for mag in self.magnifications
            }
        )
        fused = config.hidden * len(self.magnifications) + omics_dim + slide_dim
        self.out = nn.Sequential(nn.Linear(fused, config.output_dim), nn.ReLU(), nn.Dropout(config.dropout))
        self.output_dim = config.output_dim  # histo reads this to size the task's head

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        o = omics_vector(self.omics, batch["omics"])  # [B, E], token encoders averaged

        def modulated_pool(mag: str, features: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
            h = self.project[mag](features)
            gamma, beta = self.film[mag](o).chunk(2, dim=-1)
            return self.pools[mag](h * (1 + gamma.unsqueeze(1)) + beta.unsqueeze(1), mask)

        views = per_magnification(batch, modulated_pool, self.magnifications)
        parts = [views[mag][0] for mag in self.magnifications] + [o]
        outputs: dict[str, Any] = {"attention": {mag: views[mag][1] for mag in self.magnifications}}
        if self.slide is not None:
            slide_out = self.slide(batch)
            parts.append(slide_out["embedding"])
        outputs["embedding"] = self.out(torch.cat(parts, dim=1))
        return outputs
