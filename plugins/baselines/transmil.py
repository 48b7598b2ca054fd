"""TransMIL (Shao et al., NeurIPS 2021): a two-layer Nystrom transformer over a bag's patch tokens with a
class token, and PPEG (depthwise convolutions on the tokens laid out as a square) between the layers.

Padding: the original runs one bag at a time. Here each bag is squared on its own (its first tokens
repeated to fill side^2, side = ceil(sqrt(n)), in bag order), its square sits in the top-left corner of
a zero canvas for the convolutions (zeros beyond a bag's square are what zero padding gives it alone),
and the attention masks the batch padding. So a bag's embedding does not depend on its batch-mates.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from histo.blocks import per_magnification, require_features
from histo.interfaces import ModelDims

from .configs import TransMilConfig
from .nystrom import NystromAttention


def square_tokens(h: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Lay each bag's real tokens out as a side x side square in bag order, filling the rest with its
    first tokens again. h [B, N, C], mask [B, N] -> tokens [B, S*S, C], valid [B, S*S], side [B]
    (S = the largest side in the batch)."""
    n = mask.sum(1)
    side = torch.ceil(torch.sqrt(n.double())).long()
    side = side + (side * side < n).long()  # guard against rounding in sqrt
    side = side - ((side - 1) * (side - 1) >= n).long() * (side > 0).long()
    width = int(side.max()) if len(side) else 0
    positions = torch.arange(width * width, device=h.device)
    valid = positions[None] < (side * side)[:, None]
    real_first = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)  # real patches first, in order
    source = positions[None] % n.clamp_min(1)[:, None]  # position p of the square repeats token p mod n
    index = real_first.gather(1, source.clamp_max(max(h.shape[1] - 1, 0)))
    tokens = h.gather(1, index[..., None].expand(-1, -1, h.shape[2])) * valid[..., None]
    return tokens, valid, side


class PPEG(nn.Module):
    """Pyramid position encoding generator: x + dwconv7(x) + dwconv5(x) + dwconv3(x) on the square."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(dim, dim, k, padding=k // 2, groups=dim) for k in (7, 5, 3))

    def forward(self, tokens: Tensor, valid: Tensor, side: Tensor) -> Tensor:
        b, length, c = tokens.shape
        width = round(length**0.5)
        if width == 0:
            return tokens
        positions = torch.arange(length, device=tokens.device)[None]
        row = torch.div(positions, side.clamp_min(1)[:, None], rounding_mode="floor")
        cell = row * width + positions - row * side[:, None]  # (row, col) of the bag's square, on the canvas
        cell = torch.where(valid, cell, torch.full_like(cell, length))  # padding -> a spare cell
        index = cell[..., None].expand(-1, -1, c)
        canvas = tokens.new_zeros(b, length + 1, c).scatter(1, index, tokens)[:, :length]
        grid = canvas.transpose(1, 2).reshape(b, c, width, width)
        grid = grid + sum(conv(grid) for conv in self.convs)
        out = grid.flatten(2).transpose(1, 2)
        return out.gather(1, index.clamp_max(length - 1)) * valid[..., None]


class TransLayer(nn.Module):
    def __init__(self, config: TransMilConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(config.dim)
        self.attention = NystromAttention(
            config.dim,
            config.heads,
            config.landmarks,
            config.pinv_iterations,
            config.residual_kernel,
            config.dropout,
        )

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return x + self.attention(self.norm(x), mask)


class TransMilBranch(nn.Module):
    """One magnification: patch features [B, N, D] + mask -> class-token embedding [B, dim]."""

    def __init__(self, feature_dim: int, config: TransMilConfig) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Linear(feature_dim, config.dim), nn.ReLU())
        self.cls_token = nn.Parameter(torch.randn(1, 1, config.dim))
        self.layer1 = TransLayer(config)
        self.ppeg = PPEG(config.dim)
        self.layer2 = TransLayer(config)
        self.norm = nn.LayerNorm(config.dim)

    def forward(self, features: Tensor, mask: Tensor) -> Tensor:
        tokens, valid, side = square_tokens(self.project(features), mask)
        b = tokens.shape[0]
        x = torch.cat([self.cls_token.expand(b, -1, -1).to(tokens.dtype), tokens], dim=1)
        sequence_mask = torch.cat([valid.new_ones(b, 1), valid], dim=1)
        x = self.layer1(x, sequence_mask)
        x = torch.cat([x[:, :1], self.ppeg(x[:, 1:], valid, side)], dim=1)
        x = self.layer2(x, sequence_mask)
        return self.norm(x[:, 0])


class TransMil(nn.Module):
    def __init__(self, dims: ModelDims, config: TransMilConfig) -> None:
        super().__init__()
        self.magnifications = list(dims.magnifications)
        self.branches = nn.ModuleDict(
            {mag: TransMilBranch(dims.feature_dim, config) for mag in self.magnifications}
        )
        self.output_dim = config.dim * len(self.magnifications)

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        embeddings = per_magnification(
            batch, lambda mag, x, mask: self.branches[mag](x, mask), self.magnifications
        )
        return {"embedding": torch.cat(list(embeddings.values()), dim=1)}


class TransMilBuilder:
    def __init__(self, config: TransMilConfig) -> None:
        self.config = config

    def build(self, dims: ModelDims) -> nn.Module:
        require_features(dims, "slide encoder 'transmil'")
        return TransMil(dims, self.config)
