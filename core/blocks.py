"""Building blocks for model plugins: masked pooling, gated attention, magnification loops, input checks.

Bags are padded to the longest in a batch, with `mask` True for real patches. Everything here ignores
padded positions, so a bag's output does not depend on its batch-mates; histo's own encoders use these,
and third-party encoders should too rather than copying them. Torch is imported here: import this
module from model code (inside a builder), not from a plugin's entry-point module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from .errors import HistoError
from .interfaces import ModelDims

T = TypeVar("T")

__all__ = [
    "AttentionPool",
    "embedding_dim",
    "magnifications",
    "masked_mean",
    "masked_softmax",
    "omics_vector",
    "per_magnification",
    "require_features",
    "require_omics",
]


def masked_softmax(scores: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """Softmax along `dim` over the positions where `mask` is True (it broadcasts against `scores`).

    Padded positions get weight 0, and a row with no real position (an empty bag) gives all zeros
    rather than NaN.
    """
    weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=dim)
    return torch.nan_to_num(weights, nan=0.0)


def masked_mean(x: Tensor, mask: Tensor, dim: int = 1) -> Tensor:
    """Mean of x [B, N, D] over the N positions (axis `dim`) where mask [B, N] is True; 0 for an empty bag."""
    weights = mask.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(dim) / weights.sum(dim).clamp_min(1.0)


class AttentionPool(nn.Module):
    """Attention-based MIL pooling (Ilse et al. 2018): (x [B, N, D], mask [B, N]) -> (pooled, weights).

    a_i = softmax_i(w^T (tanh(V h_i) * sigmoid(U h_i))) with the gate, or w^T tanh(V h_i) without;
    pooled = sum_i a_i h_i [B, dim], weights a [B, N] (0 on padding, summing to 1 over real patches).
    With `in_dim`, h = Dropout(ReLU(Linear(x))) first projects x from `in_dim` to `dim`.
    """

    def __init__(
        self,
        dim: int,
        attention_dim: int = 128,
        *,
        gated: bool = True,
        in_dim: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.project: nn.Module = (
            nn.Identity()
            if in_dim is None
            else nn.Sequential(nn.Linear(in_dim, dim), nn.ReLU(), nn.Dropout(dropout))
        )
        self.attention_v = nn.Linear(dim, attention_dim)
        self.attention_u = nn.Linear(dim, attention_dim) if gated else None
        self.attention_w = nn.Linear(attention_dim, 1)
        self.output_dim = dim

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        h = self.project(x)
        hidden = torch.tanh(self.attention_v(h))
        if self.attention_u is not None:
            hidden = hidden * torch.sigmoid(self.attention_u(h))
        weights = masked_softmax(self.attention_w(hidden).squeeze(-1), mask)
        return torch.einsum("bn,bnd->bd", weights, h), weights


def magnifications(batch: Mapping[str, Any]) -> list[str]:
    """The magnifications a batch carries, in its order (e.g. ["10x", "20x"])."""
    return list(batch.get("features", {}))


def per_magnification(
    batch: Mapping[str, Any],
    fn: Callable[[str, Tensor, Tensor], T],
    views: Iterable[str] | None = None,
) -> dict[str, T]:
    """{mag: fn(mag, features [B, N, D], mask [B, N])} for each magnification.

    `views` fixes the order and which ones are used (a model built for `ModelDims.magnifications`
    passes them); a view the batch lacks is a HistoError saying which.
    """
    wanted = list(views) if views is not None else magnifications(batch)
    features, masks = batch.get("features", {}), batch.get("mask", {})
    missing = [mag for mag in wanted if mag not in features or mag not in masks]
    if missing:
        raise HistoError(
            f"the batch has no patch features for magnification(s) {missing} (it has "
            f"{sorted(features)}): the model was built for other magnifications than the features give"
        )
    return {mag: fn(mag, features[mag], masks[mag]) for mag in wanted}


def require_features(source: ModelDims | Mapping[str, Any], component: str) -> None:
    """Raise a HistoError naming `component` (e.g. "slide encoder 'abmil'") when there are no patch
    features: `ModelDims` without a feature size or magnifications, or a batch without features."""
    if isinstance(source, ModelDims):
        ok = source.feature_dim > 0 and bool(source.magnifications)
    else:
        ok = bool(source.get("features"))
    if not ok:
        raise HistoError(f"{component} needs patch features: set the stage's `features:` section")


def require_omics(source: ModelDims | Mapping[str, Any], component: str) -> None:
    """Raise a HistoError naming `component` when there is no expression data (no gene groups)."""
    groups = source.omics_groups if isinstance(source, ModelDims) else source.get("omics")
    if not groups:
        raise HistoError(f"{component} needs an expression table: set the stage's `omics:` section")


def embedding_dim(module: nn.Module, role: str) -> int:
    """The embedding size a built encoder exposes as `output_dim`, or a HistoError naming `role`
    (e.g. "model.omics_encoder") when it has none or gives logits instead of an embedding."""
    value: Any = getattr(module, "output_dim", None)
    if getattr(module, "produces_logits", False) or not isinstance(value, int):
        raise HistoError(
            f"{role} ({type(module).__name__}) must return an embedding and expose an integer `output_dim`"
        )
    return value


def omics_vector(encoder: nn.Module, omics: Mapping[str, Tensor]) -> Tensor:
    """One [B, output_dim] vector from an omics encoder: its output, or the mean of its tokens when it
    gives one token per gene group (`tokens = True`)."""
    embedding: Tensor = encoder(omics)
    if getattr(encoder, "tokens", False):
        embedding = embedding.mean(dim=1)
    return embedding
