"""Contracts of the learning components. They are torch modules; Protocols keep torch out of imports.

Shapes: B batch, N patches (padded; `mask` is True for real patches), D feature size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from torch import Tensor, nn


@dataclass(frozen=True)
class ModelDims:
    """Sizes known only once the data is loaded; model builders receive them."""

    feature_dim: int  # patch feature size; 0 when the run uses no slides
    omics_groups: Mapping[str, int]  # genes per group after per-fold filtering; empty without omics
    num_outputs: int  # head size, from the task
    magnifications: tuple[str, ...] = ()  # e.g. ("10x", "20x"); empty without slides


# A batch is a dict: "features" {mag: [B, N, D]}, "mask" {mag: [B, N] bool, True = real patch},
# "coords" {mag: [B, N, 2]} (level-0 pixels), "omics" {group: [B, G]}, "target" [B] or [B, 3].
#
# Models return a dict of outputs:
#   "logits"          [B, num_outputs]: the (combined) prediction; or "embedding" [B, E], to which the
#                     engine adds a linear head (then the model must also expose `output_dim`)
#   "view_logits"     {view: [B, num_outputs]}: per-magnification predictions; when present the task
#                     loss is the sum over views (the paper's task(10x) + task(20x))
#   "view_embeddings" {view: [B, E]}: per-view representation (student: its merged tokens, flattened)
#   "subspaces"       {view: {group: [B, E]}}: the teacher's disentangled subspace features
#   "attention"       {view: [B, N] or richer}: patch attention, for heatmaps and consistency
#   "aux_loss"        scalar added to the loss (e.g. the inter-magnification consistency term)
Batch = Mapping[str, Any]
Outputs = Mapping[str, Any]


@runtime_checkable
class OmicsEncoder(Protocol):
    """Builder of a module mapping {group: [B, G]} -> [B, output_dim] (or tokens [B, T, output_dim])."""

    def build(self, dims: ModelDims) -> nn.Module: ...


@runtime_checkable
class SlideEncoder(Protocol):
    """Builder of a WSI-only model: module(batch) -> {"embedding" or "logits", ...}."""

    def build(self, dims: ModelDims) -> nn.Module: ...


@runtime_checkable
class FusionStrategy(Protocol):
    """Builder of a multi-modal model: module(batch) -> {"embedding" or "logits", ...}.

    It may use the recipe's slide and omics encoders (e.g. to concatenate their embeddings) or
    bring its own (a fusion that attends from gene groups to patches).
    """

    def build(
        self, dims: ModelDims, slide_encoder: SlideEncoder | None, omics_encoder: OmicsEncoder | None
    ) -> nn.Module: ...


@runtime_checkable
class TokenAggregator(Protocol):
    """Builder of a module(tokens [B, N, D], mask [B, N]) -> {"tokens": [B, K, D],
    "assignment": [B, N] long (the output token each input joined; -1 for padding),
    "weights": [B, N] (each input's share of its output token; sums to 1 per output token)}."""

    def build(self, dim: int) -> nn.Module: ...


@runtime_checkable
class GradientCoordinator(Protocol):
    """Called after backward (gradients already averaged across processes), before the optimiser step.

    `model` is the unwrapped model (not the DDP wrapper); `outputs` those of the last micro-batch.
    """

    def coordinate(self, model: nn.Module, outputs: Outputs, targets: Tensor) -> None: ...


@runtime_checkable
class Distiller(Protocol):
    """Loss that pulls a student's outputs towards a frozen teacher's (added to the task loss)."""

    def __call__(self, student: Outputs, teacher: Outputs) -> Tensor: ...


@runtime_checkable
class Task(Protocol):
    """A prediction target: which patients are usable, label encoding fitted per fold, head size,
    loss, and metrics computed on a whole set of predictions (never averaged over batches).

    `labels` is the cohort's patient table (pandas DataFrame indexed by patient id).
    """

    num_outputs: int

    def usable(self, labels: pd.DataFrame) -> pd.Series:
        """Per patient: "" when usable, else the reason it is excluded (label missing, unknown class)."""
        ...

    def fit(self, train_labels: pd.DataFrame) -> None:
        """Fit what depends on the data (class weights, survival bin edges) on the training part only."""
        ...

    def encode(self, labels: pd.DataFrame) -> np.ndarray:
        """Targets for `loss`: class indices [n], or survival (bin, time, event) [n, 3]."""
        ...

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor: ...

    def predict(self, logits: np.ndarray) -> dict[str, np.ndarray]:
        """Per-sample outputs worth saving: probabilities, predicted class, risk, survival curve."""
        ...

    def evaluate(self, logits: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        """Metrics on a whole split (AUC, balanced accuracy, macro F1; C-index, IBS, ...)."""
        ...
