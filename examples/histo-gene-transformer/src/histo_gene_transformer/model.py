"""The encoder: gene group -> token (a small MLP per group), then a transformer over the tokens.

Input: the batch's `omics` mapping {group: [B, genes in group]}, as histo's train stage gives it.
Output: [B, dim], or [B, groups, dim] with `tokens: true` (then `self.tokens` is True, which tells
histo's fusions and the omics-only head to treat the output as a token set).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from histo.blocks import require_omics
from histo.interfaces import ModelDims
from torch import Tensor, nn

from .config import GeneTransformerConfig


class GeneTransformer(nn.Module):
    def __init__(self, dims: ModelDims, config: GeneTransformerConfig) -> None:
        super().__init__()
        require_omics(dims, "omics encoder 'gene_transformer'")  # a clear error for a run without omics
        self.groups = list(dims.omics_groups)
        self.embed = nn.ModuleDict(
            {
                group: nn.Sequential(nn.Linear(genes, config.dim), nn.GELU(), nn.Dropout(config.dropout))
                for group, genes in dims.omics_groups.items()
            }
        )
        # which group a token came from: the transformer itself is permutation-invariant
        self.group_embedding = nn.Parameter(torch.zeros(len(self.groups), config.dim))
        nn.init.normal_(self.group_embedding, std=0.02)
        layer = nn.TransformerEncoderLayer(
            config.dim, config.heads, config.feedforward, config.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.dim)
        # the two attributes histo reads from an omics encoder
        self.output_dim = config.dim
        self.tokens = config.tokens

    def forward(self, omics: Mapping[str, Tensor]) -> Tensor:
        tokens = torch.stack([self.embed[group](omics[group]) for group in self.groups], dim=1)
        encoded = self.norm(self.encoder(tokens + self.group_embedding))
        return encoded if self.tokens else encoded.mean(dim=1)
