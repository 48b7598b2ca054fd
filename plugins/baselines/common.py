"""Helpers the baselines share."""

from __future__ import annotations

from typing import Any

from torch import nn

from histo.errors import HistoError


def output_dim(module: nn.Module, role: str) -> int:
    """The embedding size a built encoder exposes as `output_dim` (the engine's contract for bodies that
    return an embedding); a clear error when it has none."""
    value: Any = getattr(module, "output_dim", None)
    if getattr(module, "produces_logits", False) or not isinstance(value, int):
        raise HistoError(
            f"{role} ({type(module).__name__}) must return an embedding and expose an integer `output_dim`"
        )
    return value
