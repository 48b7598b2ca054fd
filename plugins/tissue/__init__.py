"""Tissue segmenters: saturation thresholding at a fixed microns-per-pixel, then clean-up in microns.

Every size is in microns (window widths) or square microns (areas), and the mask is computed at a
fixed resolution chosen from the slide's mpp, so one setting works for 20x and 40x scanners alike.
The pipeline itself (numpy/scipy) is imported by the factories.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from histo import ComponentSpec, hookimpl


class SaturationConfig(BaseModel):
    """Settings shared by the saturation segmenters."""

    model_config = ConfigDict(extra="forbid")

    target_mpp: float = Field(
        default=8.0, gt=0, description="microns per pixel of the mask (~1.25x): read from the closest level"
    )
    median_um: float = Field(
        default=56.0, ge=0, description="median smoothing window width in microns (odd pixels; 0 disables)"
    )
    close_um: float = Field(
        default=40.0, ge=0, description="closing window in microns: bridges thin gaps in tissue (0 disables)"
    )
    min_tissue_area_um2: float = Field(
        default=50_000.0, ge=0, description="drop tissue pieces (dust, debris) under this area, µm²"
    )
    max_hole_area_um2: float = Field(
        default=50_000.0, ge=0, description="fill holes inside tissue up to this many square microns"
    )


class OtsuConfig(SaturationConfig):
    transform: Literal["sqrt", "none"] = Field(
        default="sqrt",
        description="choose Otsu's cut on sqrt(saturation) (keeps pale stroma on mostly-glass slides) "
        "or on saturation itself ('none', the textbook method)",
    )
    min_threshold: int = Field(
        default=8,
        ge=0,
        le=255,
        description="floor for Otsu's saturation threshold (0-255): keeps a slide of mostly glass from "
        "splitting noise into 'tissue'",
    )


class ThresholdConfig(SaturationConfig):
    threshold: int = Field(
        default=20, ge=0, le=255, description="pixels with saturation (0-255) above this are tissue"
    )


def _otsu(config: OtsuConfig) -> Any:
    from .saturation import OtsuSegmenter

    return OtsuSegmenter(config)


def _threshold(config: ThresholdConfig) -> Any:
    from .saturation import ThresholdSegmenter

    return ThresholdSegmenter(config)


@hookimpl
def histo_tissue_segmenters() -> Iterable[ComponentSpec[Any]]:
    return [
        ComponentSpec(
            name="otsu",
            factory=_otsu,
            config=OtsuConfig,
            description="Otsu threshold on HSV saturation at ~8 µm/px, median smoothing, clean-up in µm²",
        ),
        ComponentSpec(
            name="threshold",
            factory=_threshold,
            config=ThresholdConfig,
            description="fixed HSV saturation threshold, same smoothing and clean-up as otsu",
        ),
    ]
