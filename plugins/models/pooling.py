"""Masked pooling helpers shared by the slide encoders."""

from __future__ import annotations

import torch
from torch import Tensor


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over the last dim ignoring padded positions (an all-padding row gives zeros)."""
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return torch.nan_to_num(weights, nan=0.0)


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over N of x [B, N, D] counting only mask [B, N] positions."""
    weights = mask.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(1) / weights.sum(1).clamp_min(1.0)
