"""Contracts of the learning components. They are torch modules; Protocols keep torch out of imports.

Shapes: B batch, N patches (padded; `mask` is True for real patches), D feature size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from torch import Tensor, nn


@runtime_checkable
class OmicsEncoder(Protocol):
    """Expression [B, G] (or one tensor per gene group) -> embedding [B, output_dim] or tokens [B, T, D]."""

    output_dim: int

    def __call__(self, omics: Tensor | Mapping[str, Tensor]) -> Tensor: ...


@runtime_checkable
class SlideEncoder(Protocol):
    """Patch features [B, N, D] with mask [B, N] -> outputs with at least `embedding` [B, output_dim]."""

    output_dim: int

    def __call__(self, features: Tensor, mask: Tensor, **extra: Any) -> Mapping[str, Tensor]: ...


@runtime_checkable
class FusionStrategy(Protocol):
    """Slide features and omics inputs -> outputs with at least `embedding` [B, output_dim]."""

    output_dim: int

    def __call__(self, features: Tensor, mask: Tensor, omics: Any, **extra: Any) -> Mapping[str, Tensor]: ...


@runtime_checkable
class TokenAggregator(Protocol):
    """Tokens [B, N, D] with mask -> K merged tokens [B, K, D] (K fixed by the config)."""

    def __call__(self, tokens: Tensor, mask: Tensor) -> Tensor: ...


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
    """A prediction target: how labels are encoded, how many outputs the head needs, loss and metrics."""

    num_outputs: int

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor: ...

    def metrics(self, logits: Tensor, targets: Tensor) -> dict[str, float]: ...
