"""The `dmf_student` slide encoder (WSI only): per magnification, Linear+ReLU, deformable
self-attention with a residual, then a token aggregator merging the patches into K tokens; the head
reads the K tokens flattened (K x dim = the teacher's groups x dim, so features can be distilled)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from histo.errors import HistoError
from histo.interfaces import ModelDims

from .branch import require_slides, view_layout
from .configs import DmfStudentConfig
from .deformable import DeformableAttention
from .layout import TokenLayout
from .views import combine_views


def token_count(aggregator: nn.Module, dim: int) -> int:
    """K, the aggregator's output size: its `num_tokens` attribute, else one probe on 64 random tokens
    (RNG state restored, so building a model stays reproducible)."""
    declared = getattr(aggregator, "num_tokens", None)
    if isinstance(declared, int):
        return declared
    training = aggregator.training
    with torch.no_grad(), torch.random.fork_rng():
        aggregator.eval()
        probe = aggregator(torch.randn(1, 64, dim), torch.ones(1, 64, dtype=torch.bool))
    aggregator.train(training)
    return int(probe["tokens"].shape[1])


class StudentBranch(nn.Module):
    """One magnification of the student."""

    def __init__(self, feature_dim: int, config: DmfStudentConfig, aggregator: nn.Module) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Linear(feature_dim, config.dim), nn.ReLU())
        self.norm = nn.LayerNorm(config.dim)
        self.attention = DeformableAttention(config.dim, config.attention)
        self.aggregator = aggregator

    def forward(self, features: Tensor, layout: TokenLayout) -> tuple[dict[str, Tensor], Tensor]:
        """-> the aggregator's outputs and the patch attention of the self-attention [B, N]."""
        h = self.project(features)
        result = self.attention(self.norm(h), layout)
        tokens = (h + result.out) * layout.mask.unsqueeze(-1)
        return dict(self.aggregator(tokens, layout.mask)), result.patch_attention


class DmfStudent(nn.Module):
    """batch -> {"logits", "view_logits", "view_embeddings", "attention", "token_assignment", ...}."""

    produces_logits = True

    def __init__(self, dims: ModelDims, config: DmfStudentConfig) -> None:
        super().__init__()
        self.config = config
        self.views: list[str] = list(dims.magnifications)
        aggregators = {view: config.aggregator.build().build(config.dim) for view in self.views}
        self.num_tokens = token_count(next(iter(aggregators.values())), config.dim)
        self.branches = nn.ModuleDict(
            {view: StudentBranch(dims.feature_dim, config, aggregators[view]) for view in self.views}
        )
        self.output_dim = self.num_tokens * config.dim
        self.heads = nn.ModuleDict(
            {view: nn.Linear(self.output_dim, dims.num_outputs) for view in self.views}
        )

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        view_logits, embeddings, weights, assignment, patch_attention = {}, {}, {}, {}, {}
        for view in self.views:
            layout = view_layout(batch, view, self.config)
            merged, patches = self.branches[view](batch["features"][view], layout)
            tokens = merged["tokens"]
            if tokens.shape[1] != self.num_tokens:
                raise HistoError(
                    f"token aggregator {self.config.aggregator.name!r} returned {tokens.shape[1]} tokens "
                    f"for {view}, but the head was built for {self.num_tokens}: configure a fixed token count"
                )
            embeddings[view] = tokens.flatten(1)
            view_logits[view] = self.heads[view](embeddings[view])
            weights[view] = merged["weights"] * layout.mask
            assignment[view] = merged["assignment"]
            patch_attention[view] = patches
        return {
            "logits": combine_views(list(view_logits.values()), self.config.combine, self.config.confidence),
            "view_logits": view_logits,
            "view_embeddings": embeddings,
            "attention": weights,
            "token_assignment": assignment,
            "patch_attention": patch_attention,
        }


class DmfStudentBuilder:
    def __init__(self, config: DmfStudentConfig) -> None:
        self.config = config

    def build(self, dims: ModelDims) -> nn.Module:
        require_slides(dims, "dmf_student")
        return DmfStudent(dims, self.config)
