"""Late fusion by concatenation of a slide encoder's and an omics encoder's embeddings."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from histo.blocks import omics_vector
from histo.errors import HistoError
from histo.interfaces import ModelDims, OmicsEncoder, SlideEncoder

from .configs import ConcatConfig


class ConcatFusion(nn.Module):
    def __init__(self, slide: nn.Module, omics: nn.Module, config: ConcatConfig) -> None:
        super().__init__()
        self.slide = slide
        self.omics = omics
        in_dim = slide.output_dim + omics.output_dim
        self.project = nn.Sequential(
            nn.Linear(in_dim, config.output_dim), nn.ReLU(), nn.Dropout(config.dropout)
        )
        self.output_dim = config.output_dim

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        slide_out = self.slide(batch)
        omics_embedding = omics_vector(self.omics, batch["omics"])
        fused = self.project(torch.cat([slide_out["embedding"], omics_embedding], dim=1))
        return {**slide_out, "embedding": fused}


class ConcatBuilder:
    def __init__(self, config: ConcatConfig) -> None:
        self.config = config

    def build(
        self, dims: ModelDims, slide_encoder: SlideEncoder | None, omics_encoder: OmicsEncoder | None
    ) -> nn.Module:
        if slide_encoder is None or omics_encoder is None:
            raise HistoError(
                "fusion 'concat' needs both model.slide_encoder and model.omics_encoder in the recipe"
            )
        return ConcatFusion(slide_encoder.build(dims), omics_encoder.build(dims), self.config)
