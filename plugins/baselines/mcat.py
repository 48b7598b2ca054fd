"""MCAT (Chen et al., ICCV 2021): genomic-guided co-attention. One token per gene group attends over the
patch tokens (the co-attended bag has one token per group); a transformer runs over the co-attended
tokens and another over the gene-group tokens, each is pooled by gated attention, and the two vectors are
fused late (concatenation + MLP, or Pathomic's gated bilinear fusion).

Magnifications: each has its own patch projection and co-attention (its patches attend among themselves,
so each view's attention rows sum to 1 over that view's real patches, as a heatmap needs); the
co-attended tokens of all views go into one transformer, groups x views tokens.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from histo.blocks import embedding_dim, masked_softmax, require_features, require_omics
from histo.errors import HistoError
from histo.interfaces import ModelDims, OmicsEncoder, SlideEncoder
from histo.plugins.models.omics import PerGroup, snn_block

from .configs import McatConfig
from .pathomic import GatedBilinearFusion


class CoAttention(nn.Module):
    """Single-head cross-attention: gene-group queries [B, G, d] over patch keys/values [B, N, d]."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, queries: Tensor, tokens: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        scores = self.query(queries) @ self.key(tokens).transpose(1, 2) / math.sqrt(queries.shape[-1])
        weights = masked_softmax(scores, mask[:, None, :])  # [B, G, N]; 0 on padding (all 0: empty bag)
        return self.out(weights @ self.value(tokens)), weights


class GatedTokenPool(nn.Module):
    """Gated attention pooling of a token set [B, T, d] -> [B, d], then Linear + ReLU + dropout."""

    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.attention_v = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Dropout(dropout))
        self.attention_u = nn.Sequential(nn.Linear(dim, dim), nn.Sigmoid(), nn.Dropout(dropout))
        self.attention_w = nn.Linear(dim, 1)
        self.rho = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout))

    def forward(self, tokens: Tensor) -> Tensor:
        scores = self.attention_w(self.attention_v(tokens) * self.attention_u(tokens)).squeeze(-1)
        return self.rho(torch.einsum("bt,btd->bd", torch.softmax(scores, dim=-1), tokens))


def _transformer(config: McatConfig) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        config.dim, config.heads, config.feedforward, config.dropout, activation="relu", batch_first=True
    )
    return nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)


class OmicsTokens(nn.Module):
    """The recipe's token-giving omics encoder, projected to the model width when it differs."""

    def __init__(self, encoder: nn.Module, dim: int) -> None:
        super().__init__()
        self.encoder = encoder
        width = embedding_dim(encoder, "model.omics_encoder")
        self.project = nn.Identity() if width == dim else nn.Linear(width, dim)

    def forward(self, omics: Mapping[str, Tensor]) -> Tensor:
        return self.project(self.encoder(omics))


class Mcat(nn.Module):
    def __init__(self, dims: ModelDims, omics: nn.Module, config: McatConfig) -> None:
        super().__init__()
        d = config.dim
        self.magnifications = list(dims.magnifications)
        self.omics = omics
        self.project = nn.ModuleDict(
            {
                mag: nn.Sequential(nn.Linear(dims.feature_dim, d), nn.ReLU(), nn.Dropout(config.dropout))
                for mag in self.magnifications
            }
        )
        self.coattention = nn.ModuleDict({mag: CoAttention(d) for mag in self.magnifications})
        self.path_transformer = _transformer(config)
        self.path_pool = GatedTokenPool(d, config.dropout)
        self.omics_transformer = _transformer(config)
        self.omics_pool = GatedTokenPool(d, config.dropout)
        self.fusion: nn.Module
        if config.fusion == "bilinear":
            width = d // config.bilinear_scale
            self.fusion = GatedBilinearFusion(d, d, width, width, d, config.dropout)
        else:
            self.fusion = nn.Sequential(nn.Linear(2 * d, d), nn.ReLU(), nn.Linear(d, d), nn.ReLU())
        self.bilinear = config.fusion == "bilinear"
        self.output_dim = d

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        omics_tokens = self.omics(batch["omics"])  # [B, G, d]
        coattended, attention = [], {}
        for mag in self.magnifications:
            patches = self.project[mag](batch["features"][mag])
            tokens, weights = self.coattention[mag](omics_tokens, patches, batch["mask"][mag])
            coattended.append(tokens)
            attention[mag] = weights
        path = self.path_pool(self.path_transformer(torch.cat(coattended, dim=1)))
        genomic = self.omics_pool(self.omics_transformer(omics_tokens))
        fused = (
            self.fusion(path, genomic) if self.bilinear else self.fusion(torch.cat([path, genomic], dim=1))
        )
        return {"embedding": fused, "attention": attention}


class McatBuilder:
    def __init__(self, config: McatConfig) -> None:
        self.config = config

    def build(
        self, dims: ModelDims, slide_encoder: SlideEncoder | None, omics_encoder: OmicsEncoder | None
    ) -> nn.Module:
        c = self.config
        if slide_encoder is not None:
            raise HistoError(
                "fusion 'mcat' brings its own patch projection and co-attention: remove model.slide_encoder "
                "from the recipe"
            )
        require_features(dims, "fusion 'mcat'")
        require_omics(dims, "fusion 'mcat'")
        if omics_encoder is None:  # the original: two SNN blocks per gene group
            groups = {
                g: nn.Sequential(snn_block(n, c.dim, c.dropout), snn_block(c.dim, c.dim, c.dropout))
                for g, n in dims.omics_groups.items()
            }
            return Mcat(dims, PerGroup(groups, c.dim), c)
        encoder = omics_encoder.build(dims)
        if not getattr(encoder, "tokens", False):
            raise HistoError(
                "fusion 'mcat' attends from one token per gene group, but model.omics_encoder gives one "
                "vector: use `{name: snn, params: {per_group: true}}` or `pathway_tokens`, or leave "
                "omics_encoder out to use MCAT's own per-group SNNs"
            )
        return Mcat(dims, OmicsTokens(encoder, c.dim), c)
