"""Inter-magnification gene-expression consistency (the teacher's auxiliary loss).

The reference flattens each magnification's attention maps [B, heads, 2500, 144] and compares them
query by query, which needs both bags to have the same number of patches and treats patch n at 10x and
patch n at 20x (unrelated patches, in bag order) as a pair. Ours compares each sample's attention over
the sampled keys averaged over its patches, [B, heads, P*P]: the same size at every magnification, and
with the coords layout key j sits at the same relative place of the slide at both magnifications.
The two agree while a group's attention varies little from query to query (the teacher's queries are
one gene embedding, differing only by their position bias); `consistency: full_map` (the reference
preset) compares the full maps as the reference does.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import torch
from torch import Tensor

from histo.errors import HistoError


def diagonal_variance(first: Tensor, second: Tensor, weight: float) -> Tensor:
    """w * Var(diag(S)) with S = first second^T [B, B], each row of S divided by its L2 norm.

    first, second: [B, F]. Zero for a batch of one (the variance of one value is undefined).
    """
    if first.shape[0] < 2:
        return first.sum() * 0.0
    similarity = first @ second.T
    similarity = similarity / similarity.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return weight * torch.var(similarity.diagonal())


def magnification_consistency(summaries: Mapping[str, Mapping[str, Tensor]], weight: float) -> Tensor:
    """Sum over gene groups (and over pairs of magnifications, one pair in the paper) of the
    diagonal-variance loss between the magnifications' key-attention summaries {view: {group: [B, ...]}}."""
    views = list(summaries)
    total: Tensor | None = None
    for first, second in itertools.combinations(views, 2):
        for group, attention in summaries[first].items():
            term = diagonal_variance(attention.flatten(1), summaries[second][group].flatten(1), weight)
            total = term if total is None else total + term
    if total is None:
        raise ValueError("the consistency loss needs at least two magnifications")
    return total


def check_full_maps(maps: Mapping[str, Mapping[str, Tensor]]) -> None:
    """The full-map loss pairs query n of one magnification with query n of the other: same N needed."""
    sizes = {view: next(iter(groups.values())).shape[2] for view, groups in maps.items() if groups}
    if len(set(sizes.values())) > 1:
        raise HistoError(
            f"consistency: full_map compares the magnifications' attention maps query by query, but the "
            f"bags have different patch counts {sizes}; pad the bags to one size (the reference uses "
            "2,500 patches at every magnification) or set consistency: query_mean"
        )
