"""Per slide and magnification: patch size and stride at level 0, and the level and size to read.

All grids are measured in integer multiples of the finest grid's level-0 stride, so the grids share
an origin and a coarse patch is exactly `ratio` finer strides wide: containment holds to the pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from histo.errors import HistoError

from .magnification import MICRONS_AT_1X, Magnification, nest

LEVEL_TOLERANCE = 0.01  # a level up to 1% coarser than wanted is still used (e.g. 2.0005 for 2)
MAX_UPSAMPLING = 1.1  # a target up to 10% finer than the scan is read at level 0 and resized


class TilingError(HistoError):
    """The slide cannot be tiled as asked (e.g. its pixels are coarser than the target)."""


@dataclass(frozen=True)
class GridPlan:
    magnification: Magnification
    patch_size: int  # pixels at the target mpp
    overlap: int  # pixels at the target mpp shared by neighbouring patches
    ratio: int  # level-0 stride of this grid / stride of the finest grid
    stride_level0: int
    patch_size_level0: int
    read_level: int
    read_downsample: float
    read_size: int  # pixels to read at read_level, resized afterwards to patch_size
    source_mpp: float
    parent: int | None  # index of the next coarser plan, None for the coarsest

    @property
    def effective_mpp(self) -> float:
        """The pixel size patches really have after rounding the level-0 size to whole pixels."""
        return self.patch_size_level0 * self.source_mpp / self.patch_size


def choose_level(level_downsamples: Sequence[float], downsample: float) -> int:
    """The most downsampled level that is still at least as detailed as `downsample` (within 1%)."""
    best = 0
    for level, value in enumerate(level_downsamples):
        if value <= downsample * (1 + LEVEL_TOLERANCE) and value > level_downsamples[best]:
            best = level
    return best


def plan_grids(
    level_downsamples: Sequence[float],
    source_mpp: float,
    magnifications: Sequence[Magnification],
    patch_size: int,
    overlap: int = 0,
    slide: str = "slide",
) -> list[GridPlan]:
    """Plans for `magnifications`, coarsest first; raise TilingError when a target needs upsampling."""
    if not 0 <= overlap < patch_size:
        raise ValueError(f"overlap {overlap} must be in [0, patch_size={patch_size})")
    ordered = nest(magnifications)
    finest = ordered[-1]
    too_fine = [m for m in ordered if m.mpp * MAX_UPSAMPLING < source_mpp]
    if too_fine:
        raise TilingError(too_fine_message(slide, source_mpp, ordered, too_fine))
    scale = finest.mpp / source_mpp  # level-0 pixels per target pixel at the finest magnification
    unit_stride = max(1, round((patch_size - overlap) * scale))
    unit_overlap = round(overlap * scale)
    plans = []
    for index, magnification in enumerate(ordered):
        factor = round(magnification.mpp / finest.mpp)
        size_level0 = factor * (unit_stride + unit_overlap)
        level = choose_level(level_downsamples, size_level0 / patch_size)
        plans.append(
            GridPlan(
                magnification=magnification,
                patch_size=patch_size,
                overlap=overlap,
                ratio=factor,
                stride_level0=factor * unit_stride,
                patch_size_level0=size_level0,
                read_level=level,
                read_downsample=float(level_downsamples[level]),
                read_size=max(1, round(size_level0 / level_downsamples[level])),
                source_mpp=source_mpp,
                parent=index - 1 if index > 0 else None,
            )
        )
    return plans


def too_fine_message(
    slide: str, source_mpp: float, ordered: Sequence[Magnification], too_fine: Sequence[Magnification]
) -> str:
    """Every magnification the scan cannot give at once, the scan's mpp, and the finest that works."""
    finest_mpp = source_mpp / MAX_UPSAMPLING
    listing = ", ".join(f"{m.name} ({m.mpp:g} µm/px, {source_mpp / m.mpp:.2f}x upsampling)" for m in too_fine)
    usable = [m.name for m in ordered if m not in too_fine]
    keep = (
        f"Remove {', '.join(m.name for m in too_fine)} from `magnifications` (keeping {', '.join(usable)})"
        if usable
        else f"Use magnifications at or below {MICRONS_AT_1X / finest_mpp:.3g}x, e.g. "
        f"[{MICRONS_AT_1X / (source_mpp * 2):.3g}x, {MICRONS_AT_1X / source_mpp:.3g}x]"
    )
    return (
        f"slide {slide}: the scan has {source_mpp:.4g} µm/px ({MICRONS_AT_1X / source_mpp:.3g}x), so "
        f"{'magnification' if len(too_fine) == 1 else 'magnifications'} {listing} "
        f"{'is' if len(too_fine) == 1 else 'are'} finer than it; the finest that works on this slide is "
        f"{finest_mpp:.4g} µm/px ({MICRONS_AT_1X / finest_mpp:.3g}x, at most {MAX_UPSAMPLING - 1:.0%} "
        f"upsampling). {keep}, or, if the slide's mpp is wrong, correct it with `mpp_overrides`."
    )
