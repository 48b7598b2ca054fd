"""Token aggregators: N patch tokens -> K informative tokens (the student's cluster-merge step).

Every module maps (tokens [B, N, D], mask [B, N] bool) to {"tokens": [B, K, D], "assignment": [B, N]
long (output token each input joined, -1 for padding), "weights": [B, N] (share of its output token)}
and exposes `num_tokens` (K, or None when K depends on N) so the model can size its head.

All three normalise the tokens with a LayerNorm first and merge the normalised tokens, as the
reference does, so that the ablations differ only in how tokens are grouped. A bag with fewer real
tokens than K gives its n real tokens as n singleton clusters and K - n zero tokens with no members.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .configs import DpcKnnConfig, NoAggregationConfig, TopkConfig
from .knn import assign_to_centres, dpc_knn, dpc_knn_approximate, top_centres


def _check_inputs(tokens: Tensor, mask: Tensor) -> None:
    if tokens.ndim != 3 or mask.shape != tokens.shape[:2]:
        raise ValueError(
            f"token aggregator expects tokens [B, N, D] and mask [B, N]; got {tuple(tokens.shape)} "
            f"and {tuple(mask.shape)}"
        )


def merge_clusters(tokens: Tensor, scores: Tensor, assignment: Tensor, num_tokens: int) -> dict[str, Tensor]:
    """Weighted average of each cluster's members with weights softmax(score) inside the cluster.

    That is exp(score) normalised per cluster (the reference's token weight), computed stably.
    Gradients flow into `tokens` and `scores`; empty clusters give zero tokens.
    """
    batch, n, dim = tokens.shape
    padding = (assignment < 0).unsqueeze(-1)
    tokens = tokens.masked_fill(padding, 0.0)  # keeps NaNs in padding out of the merged tokens' gradients
    scores = scores.masked_fill(padding.squeeze(-1), 0.0)
    slot = torch.where(assignment >= 0, assignment, num_tokens)  # padding goes to a dropped extra slot
    flat = (slot + torch.arange(batch, device=tokens.device).unsqueeze(1) * (num_tokens + 1)).reshape(-1)
    slots = batch * (num_tokens + 1)
    flat_scores = scores.reshape(-1)
    peak = torch.full((slots,), -math.inf, dtype=scores.dtype, device=scores.device)
    peak = peak.scatter_reduce(0, flat, flat_scores.detach(), reduce="amax")
    exp = torch.exp(flat_scores - peak[flat])
    total = torch.zeros(slots, dtype=exp.dtype, device=exp.device).index_add(0, flat, exp)
    weights = (exp / total[flat]).reshape(batch, n)
    weights = weights.masked_fill(padding.squeeze(-1), 0.0)
    merged = torch.zeros(slots, dim, dtype=tokens.dtype, device=tokens.device)
    merged = merged.index_add(0, flat, (tokens * weights.unsqueeze(-1)).reshape(-1, dim))
    merged = merged.view(batch, num_tokens + 1, dim)[:, :num_tokens]
    return {"tokens": merged, "assignment": assignment, "weights": weights}


class TokenScorer(nn.Module):
    """LayerNorm, then a linear score per token (weight = exp(score), as in TCFormer)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.score = nn.Linear(dim, 1)

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        normed = self.norm(tokens)
        return normed, self.score(normed).squeeze(-1)


class DpcKnnMerge(nn.Module):
    """Cluster-merge with DPC-kNN centres (see knn.py), exact in chunks or approximate."""

    def __init__(self, dim: int, config: DpcKnnConfig) -> None:
        super().__init__()
        self.config = config
        self.scorer = TokenScorer(dim)
        self.num_tokens = config.tokens

    def output_tokens(self, n: int) -> int:
        if self.config.tokens is not None:
            return self.config.tokens
        return max(math.ceil((self.config.ratio or 0.0) * n), 1)

    @torch.no_grad()
    def cluster(self, normed: Tensor, mask: Tensor, num_tokens: int) -> Tensor:
        """assignment [B, N]: output slot of every token, -1 for padding. One bag at a time."""
        c = self.config
        assignment = torch.full(mask.shape, -1, dtype=torch.long, device=normed.device)
        for b in range(normed.shape[0]):
            real = torch.nonzero(mask[b]).squeeze(1)
            if real.numel() == 0:
                continue
            x = normed[b, real].float()
            if c.exact or x.shape[0] <= c.exact_below:
                _, joined = dpc_knn(x, num_tokens, c.k, c.chunk_size)
            else:
                _, joined = dpc_knn_approximate(x, num_tokens, c.k, c.chunk_size, c.cells, c.probe, c.seed)
            assignment[b, real] = joined
        return assignment

    def forward(self, tokens: Tensor, mask: Tensor) -> dict[str, Tensor]:
        _check_inputs(tokens, mask)
        num_tokens = self.output_tokens(tokens.shape[1])
        normed, scores = self.scorer(tokens)
        assignment = self.cluster(normed.detach(), mask.bool(), num_tokens)
        return merge_clusters(normed, scores, assignment, num_tokens)


class TopkMerge(nn.Module):
    """The K highest-scoring tokens are the centres; every token joins its nearest centre.

    Ablation of DPC-kNN's centre choice (density peaks -> learned score). O(N K) time and memory.
    """

    def __init__(self, dim: int, config: TopkConfig) -> None:
        super().__init__()
        self.scorer = TokenScorer(dim)
        self.num_tokens = config.tokens

    @torch.no_grad()
    def cluster(self, normed: Tensor, scores: Tensor, mask: Tensor) -> Tensor:
        assignment = torch.full(mask.shape, -1, dtype=torch.long, device=normed.device)
        for b in range(normed.shape[0]):
            real = torch.nonzero(mask[b]).squeeze(1)
            if real.numel() == 0:
                continue
            centres = top_centres(scores[b, real], self.num_tokens)
            assignment[b, real] = assign_to_centres(normed[b, real].float(), centres, chunk=1024)
        return assignment

    def forward(self, tokens: Tensor, mask: Tensor) -> dict[str, Tensor]:
        _check_inputs(tokens, mask)
        normed, scores = self.scorer(tokens)
        assignment = self.cluster(normed.detach(), scores.detach(), mask.bool())
        return merge_clusters(normed, scores, assignment, self.num_tokens)


class MeanToken(nn.Module):
    """'Aggregation off': one output token, the plain masked mean of the normalised tokens.

    The head input shrinks from K x D to D: the ablation compares heads of different sizes.
    """

    num_tokens = 1

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: Tensor, mask: Tensor) -> dict[str, Tensor]:
        _check_inputs(tokens, mask)
        mask = mask.bool()
        normed = self.norm(tokens)
        weights = mask.to(normed.dtype) / mask.sum(1, keepdim=True).clamp_min(1).to(normed.dtype)
        merged = torch.einsum("bn,bnd->bd", weights, normed).unsqueeze(1)
        assignment = torch.where(mask, 0, -1).long()
        return {"tokens": merged, "assignment": assignment, "weights": weights}


class DpcKnnBuilder:
    def __init__(self, config: DpcKnnConfig) -> None:
        self.config = config
        self.num_tokens = config.tokens

    def build(self, dim: int) -> nn.Module:
        return DpcKnnMerge(dim, self.config)


class TopkBuilder:
    def __init__(self, config: TopkConfig) -> None:
        self.config = config
        self.num_tokens = config.tokens

    def build(self, dim: int) -> nn.Module:
        return TopkMerge(dim, self.config)


class MeanTokenBuilder:
    num_tokens = 1

    def __init__(self, config: NoAggregationConfig) -> None:
        self.config = config

    def build(self, dim: int) -> nn.Module:
        return MeanToken(dim)
