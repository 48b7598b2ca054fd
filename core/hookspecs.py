"""The hooks a histo plugin implements. Each returns an iterable of `ComponentSpec` records.

A plugin module implements any subset of them with `@histo.hookimpl`. Hooks take no arguments and
must not have side effects: histo calls them once per process and keeps the records in registries.
Every hook here is documented in docs/plugins.md; a test keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .specs import ComponentSpec

hookspec = pluggy.HookspecMarker("histo")


@hookspec
def histo_slide_readers() -> Iterable[ComponentSpec[Any]]:
    """Slide readers (`histo.interfaces.SlideReader`): open a slide file, report its mpp, read regions."""


@hookspec
def histo_tissue_segmenters() -> Iterable[ComponentSpec[Any]]:
    """Tissue segmenters (`histo.interfaces.TissueSegmenter`): a boolean tissue mask at low resolution."""


@hookspec
def histo_feature_extractors() -> Iterable[ComponentSpec[Any]]:
    """Feature extractors (`histo.interfaces.FeatureExtractor`): patches to feature vectors."""


@hookspec
def histo_omics_encoders() -> Iterable[ComponentSpec[Any]]:
    """Omics encoders (`histo.interfaces.OmicsEncoder`): expression profiles to embeddings or tokens."""


@hookspec
def histo_slide_encoders() -> Iterable[ComponentSpec[Any]]:
    """Slide encoders (`histo.interfaces.SlideEncoder`): a bag of patch features to a slide embedding."""


@hookspec
def histo_fusion_strategies() -> Iterable[ComponentSpec[Any]]:
    """Fusion strategies (`histo.interfaces.FusionStrategy`): slide and omics inputs to one representation."""


@hookspec
def histo_token_aggregators() -> Iterable[ComponentSpec[Any]]:
    """Token aggregators (`histo.interfaces.TokenAggregator`): N tokens to K informative tokens."""


@hookspec
def histo_gradient_coordinators() -> Iterable[ComponentSpec[Any]]:
    """Gradient coordinators (`histo.interfaces.GradientCoordinator`): adjust gradients after backward."""


@hookspec
def histo_distillers() -> Iterable[ComponentSpec[Any]]:
    """Distillers (`histo.interfaces.Distiller`): the loss that transfers a teacher into a student."""


@hookspec
def histo_tasks() -> Iterable[ComponentSpec[Any]]:
    """Tasks (`histo.interfaces.Task`): label encoding, output size, loss and metrics."""


@hookspec
def histo_classical_models() -> Iterable[ComponentSpec[Any]]:
    """Classical models (`histo.interfaces.ClassicalModel`): fitted on a patients x features matrix."""


@hookspec
def histo_stages() -> Iterable[ComponentSpec[Any]]:
    """Stages (`histo.interfaces.Stage`): recipe steps that read and write the run directory."""
