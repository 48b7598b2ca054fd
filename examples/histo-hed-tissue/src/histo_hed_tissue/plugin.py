"""The module histo loads through the `histo` entry point: hooks that return component specs.

It imports only the config (pydantic); the segmenter and its numpy/scipy code are imported by the
factory, so `histo plugins` and `histo validate` stay fast whatever this package grows into.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from histo import ComponentSpec, hookimpl

from .config import HedThresholdConfig

if TYPE_CHECKING:
    from histo.interfaces import TissueSegmenter


def build_hed_threshold(config: HedThresholdConfig) -> TissueSegmenter:
    from .segmenter import HedThresholdSegmenter

    return HedThresholdSegmenter(config)


HED_THRESHOLD: ComponentSpec[TissueSegmenter] = ComponentSpec(
    name="hed_threshold",
    factory=build_hed_threshold,
    config=HedThresholdConfig,
    description="tissue by haematoxylin+eosin optical density (colour deconvolution), for pale/IHC slides",
)


@hookimpl
def histo_tissue_segmenters() -> Iterable[ComponentSpec[Any]]:
    return [HED_THRESHOLD]
