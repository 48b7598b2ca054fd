"""Contracts of the learning components. Protocols keep torch out of imports.

The model kinds' factories return *builders*; the train stage calls `build(...)` once per fold, when
the sizes are known, and gets the torch module. docs/plugins.md states the whole contract with
examples, and `histo.testing.check_component` checks it.

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
# "coords" {mag: [B, N, 2]} (level-0 pixels), "omics" {group: [B, G]}, "target" [B] int64 or [B, 3]
# (survival bin, time, event), "patient_id" [B] list of str. Outputs must not depend on padding.
#
# Models return a dict of outputs:
#   "logits"          [B, num_outputs]: the (combined) prediction, from a module with
#                     `produces_logits = True`; or "embedding" [B, E], to which the engine adds a
#                     linear head (then the module must expose `output_dim` = E)
#   "view_logits"     {view: [B, num_outputs]}: per-magnification predictions; when present the task
#                     loss is the sum over views (the paper's task(10x) + task(20x))
#   "view_embeddings" {view: [B, E]}: per-view representation (student: its merged tokens, flattened)
#   "subspaces"       {view: {group: [B, E]}}: the teacher's disentangled subspace features
#   "attention"       {view: [B, N] or richer}: patch attention, for heatmaps and consistency
#   "group_attention" {view: {group: [B, N]}}: per-group patch attention, for heatmaps
#   "aux_loss"        scalar added to the loss (e.g. the inter-magnification consistency term)
#
# Module attributes histo reads: `output_dim` (embedding or token size), `produces_logits`,
# `tokens` and `groups` (omics encoders giving one token per group), `num_tokens` (aggregators).
Batch = Mapping[str, Any]
Outputs = Mapping[str, Any]


@runtime_checkable
class OmicsEncoder(Protocol):
    """Builder of a module mapping batch["omics"] {group: [B, G]} -> [B, output_dim], or tokens
    [B, T, output_dim] when the module sets `tokens = True` (and `groups`, the group of each token).
    The module exposes `output_dim`."""

    def build(self, dims: ModelDims) -> nn.Module: ...


@runtime_checkable
class SlideEncoder(Protocol):
    """Builder of a WSI-only model: module(batch) -> {"embedding" [B, output_dim] or "logits", ...},
    called on the whole batch dict. The module exposes `output_dim`, or `produces_logits = True`."""

    def build(self, dims: ModelDims) -> nn.Module: ...


@runtime_checkable
class FusionStrategy(Protocol):
    """Builder of a multi-modal model: module(batch) -> {"embedding" or "logits", ...}.

    `slide_encoder` and `omics_encoder` are the recipe's encoder *builders* (None when absent): call
    their `build(dims)` to use them (e.g. to concatenate their embeddings), or bring your own networks
    (a fusion that attends from gene groups to patches).
    """

    def build(
        self, dims: ModelDims, slide_encoder: SlideEncoder | None, omics_encoder: OmicsEncoder | None
    ) -> nn.Module: ...


@runtime_checkable
class TokenAggregator(Protocol):
    """Builder (`build(dim)`, the token width) of a module(tokens [B, N, D], mask [B, N]) ->
    {"tokens": [B, K, D], "assignment": [B, N] long (the output token each input joined; -1 for
    padding), "weights": [B, N] (each input's share of its output token; sums to 1 per output token)}.
    The module sets `num_tokens` = K when K is fixed."""

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

    `labels` is the cohort's patient table (pandas DataFrame indexed by patient id). The engine also
    reads `config` (its validated config: `classes` names prediction columns, `column` the label
    column, where present) and, optionally, `is_survival` and `selection_metrics`.
    """

    num_outputs: int
    config: Any

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

    def evaluate(self, logits: np.ndarray, targets: np.ndarray, **references: Any) -> dict[str, float]:
        """Metrics on a whole split (AUC, balanced accuracy, macro F1; C-index, IBS, ...). For the test
        split the engine also passes `train_logits` and `train_targets` (survival metrics use them)."""
        ...
