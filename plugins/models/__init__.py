"""Default model components for the training engine: omics encoders, WSI-only slide encoders and a
concatenation fusion. Torch is imported inside the builders' modules, not here."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from histo import ComponentSpec, hookimpl

from .configs import AbmilConfig, ConcatConfig, MeanPoolConfig, MlpConfig, PathwayTokensConfig, SnnConfig


def _builder(module: str, cls: str) -> Any:
    def factory(config: Any) -> Any:
        import importlib

        return getattr(importlib.import_module(f"histo.plugins.models.{module}"), cls)(config)

    return factory


@hookimpl
def histo_omics_encoders() -> Iterable[ComponentSpec[Any]]:
    return [
        ComponentSpec(
            "snn",
            _builder("omics", "SnnBuilder"),
            SnnConfig,
            "self-normalising network (Klambauer et al.), one vector or one token per gene group",
        ),
        ComponentSpec(
            "mlp",
            _builder("omics", "MlpBuilder"),
            MlpConfig,
            "plain ReLU MLP with dropout over the expression vector",
        ),
        ComponentSpec(
            "pathway_tokens",
            _builder("omics", "PathwayTokensBuilder"),
            PathwayTokensConfig,
            "one token per gene group, for fusions that attend over token sets",
        ),
    ]


@hookimpl
def histo_slide_encoders() -> Iterable[ComponentSpec[Any]]:
    return [
        ComponentSpec(
            "abmil",
            _builder("slide", "AbmilBuilder"),
            AbmilConfig,
            "gated attention MIL (Ilse et al. 2018), one attention pooling per magnification",
        ),
        ComponentSpec(
            "mean",
            _builder("slide", "MeanPoolBuilder"),
            MeanPoolConfig,
            "masked mean of patch features per magnification, then a projection",
        ),
    ]


@hookimpl
def histo_fusion_strategies() -> Iterable[ComponentSpec[Any]]:
    return [
        ComponentSpec(
            "concat",
            _builder("fusion", "ConcatBuilder"),
            ConcatConfig,
            "concatenate the slide and omics embeddings, then project",
        ),
    ]
