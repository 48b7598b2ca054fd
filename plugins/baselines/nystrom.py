"""Nystrom self-attention (Xiong et al., AAAI 2021) with padding masks, linear in the sequence length.

softmax(Q K^T) V is approximated by softmax(Q Kl^T) pinv(softmax(Ql Kl^T)) softmax(Ql K^T) V, where
Ql, Kl are m landmarks: the means of m contiguous segments of each sequence. Segments are cut from each
sequence's own real positions (position j of a sequence of L real tokens is in segment floor(j m / L)),
and the pseudo-inverse is scaled per matrix, so a sequence's output does not depend on how much padding
the batch adds to it. With L <= m every token is its own landmark and the approximation becomes exact
as the pseudo-inverse iterations converge.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def segment_ids(mask: Tensor, landmarks: int) -> Tensor:
    """[B, L] segment of each position (0..landmarks-1), `landmarks` for padding positions."""
    lengths = mask.sum(1, keepdim=True).clamp_min(1)
    rank = mask.long().cumsum(1) - 1  # index of each real position among its sequence's real positions
    segment = torch.div(rank * landmarks, lengths, rounding_mode="floor")
    return torch.where(mask, segment, torch.full_like(segment, landmarks))


def segment_means(x: Tensor, segments: Tensor, landmarks: int) -> tuple[Tensor, Tensor]:
    """Means of x [B, H, L, d] over segments [B, L] -> ([B, H, m, d], present [B, m] bool).

    Sums and counts are accumulated in float32: in bf16, a running count stops growing at 256."""
    b, h, length, d = x.shape
    index = segments[:, None, :, None].expand(b, h, length, d)
    sums = x.new_zeros(b, h, landmarks + 1, d, dtype=torch.float32).scatter_add(2, index, x.float())
    ones = torch.ones_like(segments, dtype=torch.float32)
    counts = ones.new_zeros(b, landmarks + 1).scatter_add(1, segments, ones)[:, :landmarks]
    means = sums[:, :, :landmarks] / counts.clamp_min(1)[:, None, :, None]
    return means.to(x.dtype), counts > 0


def iterative_pinv(x: Tensor, iterations: int) -> Tensor:
    """Moore-Penrose pseudo-inverse of each matrix in x [..., m, m] by the iteration of Razavi et al.
    (2014), started from x^T / (max row sum * max column sum) of that matrix alone."""
    with torch.autocast(x.device.type, enabled=False):
        x = x.float()
        magnitude = x.abs()
        scale = magnitude.sum(-1).amax(-1) * magnitude.sum(-2).amax(-1)
        z = x.transpose(-1, -2) / scale.clamp_min(torch.finfo(x.dtype).tiny)[..., None, None]
        eye = torch.eye(x.shape[-1], device=x.device, dtype=x.dtype)
        for _ in range(iterations):
            xz = x @ z
            z = 0.25 * z @ (13 * eye - xz @ (15 * eye - xz @ (7 * eye - xz)))
    return z


def _masked_softmax(scores: Tensor, keep: Tensor) -> Tensor:
    # every row keeps at least one key here (each sequence has a real token), so no all-masked rows
    return torch.softmax(scores.masked_fill(~keep, torch.finfo(scores.dtype).min), dim=-1)


def nystrom_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor, landmarks: int, iterations: int = 6
) -> Tensor:
    """Approximate softmax(q k^T) v for q, k, v [B, H, L, d] (q already scaled), mask [B, L] (True =
    real). Memory and time are O(L m), never O(L^2). Padding rows of the result are 0."""
    segments = segment_ids(mask, landmarks)
    q_land, present = segment_means(q, segments, landmarks)
    k_land, _ = segment_means(k, segments, landmarks)
    keep_landmark = present[:, None, None, :]
    real_landmark = present[:, None, :, None].to(q.dtype)
    attn1 = _masked_softmax(q @ k_land.transpose(-1, -2), keep_landmark)  # [B, H, L, m]
    attn2 = _masked_softmax(q_land @ k_land.transpose(-1, -2), keep_landmark) * real_landmark  # [B, H, m, m]
    attn3 = (
        _masked_softmax(q_land @ k.transpose(-1, -2), mask[:, None, None, :]) * real_landmark
    )  # [B, H, m, L]
    # empty landmarks give zero rows and columns of attn2, hence of its pseudo-inverse: they drop out
    out = (attn1 @ iterative_pinv(attn2, iterations).to(attn1.dtype)) @ (attn3 @ v)
    return out * mask[:, None, :, None].to(out.dtype)


class NystromAttention(nn.Module):
    """Multi-head self-attention via `nystrom_attention`, plus the depthwise convolution over the values
    along the sequence that TransMIL's attention adds ("residual")."""

    def __init__(
        self, dim: int, heads: int, landmarks: int, iterations: int, residual_kernel: int, dropout: float
    ) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.landmarks = landmarks
        self.iterations = iterations
        self.to_qkv = nn.Linear(dim, 3 * self.head_dim * heads, bias=False)
        self.to_out = nn.Sequential(nn.Linear(self.head_dim * heads, dim), nn.Dropout(dropout))
        self.residual = (
            nn.Conv2d(
                heads,
                heads,
                (residual_kernel, 1),
                padding=(residual_kernel // 2, 0),
                groups=heads,
                bias=False,
            )
            if residual_kernel
            else None
        )

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        b, length, _ = x.shape
        keep = mask[:, None, :, None]
        q, k, v = (
            t.reshape(b, length, self.heads, self.head_dim).transpose(1, 2) * keep
            for t in self.to_qkv(x).chunk(3, dim=-1)
        )  # padding zeroed: the value convolution sees zeros there, as beyond a sequence's end
        out = nystrom_attention(q * self.head_dim**-0.5, k, v, mask, self.landmarks, self.iterations)
        if self.residual is not None:
            out = out + self.residual(v) * keep
        return self.to_out(out.transpose(1, 2).reshape(b, length, -1))
