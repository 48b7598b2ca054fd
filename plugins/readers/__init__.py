"""Slide readers: OpenSlide formats and plain images.

Only the configs live here; the readers themselves (and openslide, PIL) are imported by the factories,
so listing plugins stays fast.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from histo import ComponentSpec, hookimpl

# .dcm: a DICOM whole-slide image is a folder of one series' instance files (see dicom_series.py)
OPENSLIDE_EXTENSIONS = (".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".svslide", ".bif", ".dcm")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


class OpenSlideConfig(BaseModel):
    """OpenSlide's reader: mpp comes from the file or from the tile stage's overrides."""

    model_config = ConfigDict(extra="forbid")

    fast_jpeg2000: bool = Field(
        default=True,
        description="decode whole-level reads (overviews, QC thumbnails) of Aperio SVS files stored as "
        "JPEG 2000 on all cores with imagecodecs: the same pixels as OpenSlide's decoder, 2-5x less wall "
        "time on 2 cores; false leaves every read to OpenSlide",
    )


class ImageConfig(BaseModel):
    """A plain image (a region of interest exported as PNG/JPEG/TIFF) read as a slide."""

    model_config = ConfigDict(extra="forbid")

    mpp: float | None = Field(
        default=None,
        gt=0,
        description="microns per pixel of the images whose file states no resolution (TIFF "
        "XResolution, PNG pHYs, JPEG JFIF density); a per-slide override from the tile stage wins over both",
    )
    pyramid: bool = Field(
        default=True,
        description="build a virtual pyramid of 2x downsamples, so low-magnification reads stay cheap",
    )
    min_level_size: int = Field(
        default=512, ge=16, description="smallest shorter side of a virtual pyramid level"
    )


def _openslide(config: OpenSlideConfig) -> Any:
    from .openslide_reader import OpenSlideReader

    return OpenSlideReader(config)


def _image(config: ImageConfig) -> Any:
    from .image_reader import ImageReader

    return ImageReader(config)


@hookimpl
def histo_slide_readers() -> Iterable[ComponentSpec[Any]]:
    return [
        ComponentSpec(
            name="openslide",
            factory=_openslide,
            config=OpenSlideConfig,
            description="whole-slide images through OpenSlide (SVS, NDPI, MRXS, SCN, BIF, tiled TIFF, ...)",
        ),
        ComponentSpec(
            name="image",
            factory=_image,
            config=ImageConfig,
            description="plain PNG/JPEG/TIFF images (mpp from the file or given), as a virtual pyramid",
        ),
    ]
