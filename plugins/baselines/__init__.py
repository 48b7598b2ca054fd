"""The baselines of the paper's comparison table that the default model plugins lack: TransMIL (slide
encoder), Pathomic Fusion and MCAT (fusions). ABMIL, SNN and concatenation live in histo.plugins.models.
Torch is imported inside the builders' modules, not here."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from histo import ComponentSpec, hookimpl

from .configs import McatConfig, PathomicConfig, TransMilConfig


def _builder(module: str, cls: str) -> Any:
    def factory(config: Any) -> Any:
        import importlib

        return getattr(importlib.import_module(f"histo.plugins.baselines.{module}"), cls)(config)

    return factory


@hookimpl
def histo_slide_encoders() -> Iterable[ComponentSpec[Any]]:
    return [
        ComponentSpec(
            "transmil",
            _builder("transmil", "TransMilBuilder"),
            TransMilConfig,
            "TransMIL (Shao et al. 2021): Nystrom-attention transformer with PPEG positional encoding, "
            "one branch per magnification",
        ),
    ]


@hookimpl
def histo_fusion_strategies() -> Iterable[ComponentSpec[Any]]:
    return [
        ComponentSpec(
            "pathomic",
            _builder("pathomic", "PathomicBuilder"),
            PathomicConfig,
            "Pathomic Fusion (Chen et al. 2020): gated units, then the Kronecker product of the slide and "
            "omics embeddings",
        ),
        ComponentSpec(
            "mcat",
            _builder("mcat", "McatBuilder"),
            McatConfig,
            "MCAT (Chen et al. 2021): gene-group tokens co-attend over patches, two transformers, "
            "attention pooling, late fusion",
        ),
    ]
