"""The pixel size a plain image states itself: TIFF XResolution/ResolutionUnit, PNG pHYs, JPEG JFIF.

Microscopes and slide viewers that export regions write their real resolution there (e.g. 50,800 dpi
for 0.5 µm/px). Image editors write a screen or print default instead (72, 96, 300 dpi: 85-353 µm/px),
which describes no microscope; such a coarse value is ignored and quoted in the missing-mpp message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image

MICRONS_PER_INCH = 25_400.0
MICRONS_PER_CM = 10_000.0
MAX_MICROSCOPE_MPP = 50.0  # coarser than this (under ~500 dpi) is an editor's default, not a scan's
TIFF_X_RESOLUTION, TIFF_Y_RESOLUTION, TIFF_RESOLUTION_UNIT = 282, 283, 296


@dataclass(frozen=True)
class FileResolution:
    """Microns per pixel as the file states them, and where in the file they were found."""

    x: float
    y: float
    where: str  # e.g. "PNG pHYs", for messages

    @property
    def usable(self) -> bool:
        return max(self.x, self.y) <= MAX_MICROSCOPE_MPP

    def describe(self) -> str:
        return f"{self.where} states {self.x:.4g} x {self.y:.4g} µm/px"


def _per_unit(density: object, microns_per_unit: float) -> float | None:
    """Microns per pixel from pixels per unit, or None when the density is absent, zero or garbage."""
    try:
        value = float(density)  # type: ignore[arg-type]  # PIL's IFDRational, int, float
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return microns_per_unit / value if math.isfinite(value) and value > 0 else None


def _pair(x: object, y: object, microns_per_unit: float, where: str) -> FileResolution | None:
    mpp_x, mpp_y = _per_unit(x, microns_per_unit), _per_unit(y, microns_per_unit)
    if mpp_x is None and mpp_y is None:
        return None
    return FileResolution(mpp_x or mpp_y or 0.0, mpp_y or mpp_x or 0.0, where)


def file_resolution(image: Image.Image) -> FileResolution | None:
    """The resolution stored in the file's header (read without decoding pixels), or None."""
    if image.format == "TIFF":
        tags = getattr(image, "tag_v2", {})
        unit = {2: MICRONS_PER_INCH, 3: MICRONS_PER_CM}.get(int(tags.get(TIFF_RESOLUTION_UNIT, 2)))
        if unit is None:  # ResolutionUnit 1: no absolute unit, only an aspect ratio
            return None
        return _pair(tags.get(TIFF_X_RESOLUTION), tags.get(TIFF_Y_RESOLUTION), unit, "TIFF XResolution")
    if image.format == "PNG":
        # Pillow reports pHYs in metres (unit 1) as dots per inch; unit 0 is an aspect ratio only
        dpi = image.info.get("dpi")
        return _pair(dpi[0], dpi[1], MICRONS_PER_INCH, "PNG pHYs") if dpi else None
    if image.format == "JPEG":
        unit = {1: MICRONS_PER_INCH, 2: MICRONS_PER_CM}.get(image.info.get("jfif_unit", 0))
        density = image.info.get("jfif_density")
        if unit is None or not density:  # JFIF unit 0: aspect ratio only
            return None
        return _pair(density[0], density[1], unit, "JPEG JFIF density")
    return None
