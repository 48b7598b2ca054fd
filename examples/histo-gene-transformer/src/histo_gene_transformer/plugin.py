"""The module the `histo` entry point names: one hook, cheap to import (no torch here)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from histo import ComponentSpec, hookimpl
from histo.interfaces import ModelDims

from .config import GeneTransformerConfig


class GeneTransformerBuilder:
    """What histo's omics_encoders contract asks for: a builder whose `build(dims)` returns the module.

    The train stage knows the gene groups (and how many genes each keeps after filtering) only once
    the data is loaded, so it calls `build` with them in `ModelDims`.
    """

    def __init__(self, config: GeneTransformerConfig) -> None:
        self.config = config

    def build(self, dims: ModelDims) -> Any:
        from .model import GeneTransformer  # torch loads only when a recipe uses the encoder

        return GeneTransformer(dims, self.config)


@hookimpl
def histo_omics_encoders() -> Iterable[ComponentSpec[Any]]:
    return [
        ComponentSpec(
            "gene_transformer",
            GeneTransformerBuilder,
            GeneTransformerConfig,
            "one token per gene group, then self-attention between the groups (transformer encoder)",
        )
    ]
