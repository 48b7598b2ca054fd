"""Combining the magnifications' predictions into one (the paper's max-confidence rule and alternatives)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def view_confidence(logits: Tensor, kind: str) -> Tensor:
    """[B, C] -> [B]: max softmax probability, or for discrete-time hazards ('sigmoid') the mean over bins
    of max(h, 1 - h), how sure the view is about each bin's event."""
    if kind == "sigmoid":
        hazards = torch.sigmoid(logits)
        return torch.maximum(hazards, 1 - hazards).mean(dim=1)
    return torch.softmax(logits, dim=1).max(dim=1).values


def combine_views(logits: Sequence[Tensor], rule: str, confidence: str = "softmax") -> Tensor:
    """One [B, C] prediction from per-view logits.

    max_confidence: per sample, the logits of the view with the highest confidence (ties go to the later
    view, as in the reference); average: mean of the logits; softmax_average: log of the mean softmax.
    """
    if len(logits) == 1:
        return logits[0]
    stacked = torch.stack(list(logits))  # [V, B, C]
    if rule == "average":
        return stacked.mean(dim=0)
    if rule == "softmax_average":
        return torch.log(torch.softmax(stacked, dim=-1).mean(dim=0) + 1e-8)
    if rule != "max_confidence":
        raise ValueError(f"unknown view combination {rule!r}")
    scores = torch.stack([view_confidence(x, confidence) for x in logits])  # [V, B]
    last_best = len(logits) - 1 - scores.flip(0).argmax(dim=0)  # [B]
    index = last_best[None, :, None].expand(1, *stacked.shape[1:])
    return stacked.gather(0, index).squeeze(0)
