"""The module the `histo` entry point names: one hook, cheap to import (no torch here)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from histo import ComponentSpec, hookimpl
from histo.interfaces import ModelDims

from .config import GatedMilConfig


class GatedMilBuilder:
    """histo's slide_encoders contract: a builder whose `build(dims)` returns the module; the train
    stage calls it once the feature size and magnifications of the data are known."""

    def __init__(self, config: GatedMilConfig) -> None:
        self.config = config

    def build(self, dims: ModelDims) -> Any:
        from .model import GatedMil  # torch loads only when a recipe uses the encoder

        return GatedMil(dims, self.config)


@hookimpl
def histo_slide_encoders() -> Iterable[ComponentSpec[Any]]:
    return [
        ComponentSpec(
            "gated_mil",
            GatedMilBuilder,
            GatedMilConfig,
            "multi-branch gated-attention MIL: several attention poolings per magnification, concatenated",
        )
    ]
