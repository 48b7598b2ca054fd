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
# "coords" {mag: [B, N, 2]}, "omics" {group: [B, G]}. Models return a dict with "logits"
# [B, num_outputs] (or "embedding" [B, E], to which the engine adds a linear head) and may add
# "aux_loss" (a scalar added to the task loss) and anything worth keeping (attention, subspaces).
Batch = Mapping[str, Any]


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
    """Builder of a module mapping tokens [B, N, D] with mask [B, N] -> K tokens [B, K, D]."""

    def build(self, dim: int) -> nn.Module: ...


@runtime_checkable
class GradientCoordinator(Protocol):
    """Called after backward (and after cross-process averaging), before the optimiser step."""

    def coordinate(self, model: nn.Module, outputs: Mapping[str, Tensor], targets: Tensor) -> None: ...


@runtime_checkable
class Distiller(Protocol):
    """Loss that pulls a student's outputs towards a frozen teacher's."""

    def __call__(self, student: Mapping[str, Tensor], teacher: Mapping[str, Tensor]) -> Tensor: ...


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
