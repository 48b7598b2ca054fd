"""QC picture of one slide: thumbnail, tissue outline, and the kept patches of each magnification.

Drawn with array operations at thumbnail scale (each thumbnail pixel looks up its grid cell), so
a slide with a million patches draws as fast as one with ten. The picture is a palette image: the
thumbnail is quantised to `THUMBNAIL_COLOURS` colours and the overlays take the palette entries
after them, so drawing writes one byte a pixel and the PNG is a third of an RGB one's size and
encodes three to four times faster (QC used to cost as much as tiling itself; performance.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from histo.interfaces import Slide, TissueMask
from histo.plugins.readers.common import read_downsampled

from .grid import Grid

TISSUE_COLOUR = (0, 0, 0)
# Okabe-Ito colours, readable with colour-blindness: coarsest magnification first
COLOURS = ((0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (230, 159, 0), (86, 180, 233))
LEGEND_HEIGHT = 16
WHITE = (255, 255, 255)
# palette: the thumbnail's colours, then white (legend), the tissue outline, one per magnification
THUMBNAIL_COLOURS = 256 - 2 - len(COLOURS)
WHITE_INDEX, TISSUE_INDEX = THUMBNAIL_COLOURS, THUMBNAIL_COLOURS + 1
PNG_OPTIONS = {"format": "PNG", "compress_level": 1}  # zlib's fastest level: 1.5x level 6's size


def thumbnail(slide: Slide, max_size: int) -> tuple[np.ndarray, float]:
    """An RGB overview whose longer side is at most `max_size`, read strip by strip, and its downsample."""
    width, height = slide.dimensions
    image, _ = read_downsampled(slide, max(max(width, height) / max_size, 1.0))
    scale = max(image.shape[:2]) / max_size
    if scale > 1:
        size = (max(1, round(image.shape[1] / scale)), max(1, round(image.shape[0] / scale)))
        image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX))
    return image, width / image.shape[1]


def erode(region: np.ndarray) -> np.ndarray:
    """Binary erosion by the 4-neighbour cross, outside the image counting as background
    (scipy's `binary_erosion(region, border_value=0)`, with slices instead of a generic filter)."""
    out = region.copy()
    out[1:] &= region[:-1]
    out[:-1] &= region[1:]
    out[:, 1:] &= region[:, :-1]
    out[:, :-1] &= region[:, 1:]
    out[[0, -1]] = False
    out[:, [0, -1]] = False
    return out


def dilate(region: np.ndarray) -> np.ndarray:
    """Binary dilation by the 4-neighbour cross (scipy's `binary_dilation(region)`)."""
    out = region.copy()
    out[1:] |= region[:-1]
    out[:-1] |= region[1:]
    out[:, 1:] |= region[:, :-1]
    out[:, :-1] |= region[:, 1:]
    return out


def _outline(region: np.ndarray) -> np.ndarray:
    return region & ~erode(region)


def _cells(pixels: int, downsample: float, stride: int) -> np.ndarray:
    """Grid cell index of each thumbnail pixel's centre along one axis."""
    return ((np.arange(pixels) + 0.5) * downsample // stride).astype(np.intp)


def grid_lines(shape: tuple[int, int], downsample: float, grid: Grid) -> np.ndarray:
    """Boolean image of the kept cells' borders (the stride grid; overlaps are not drawn)."""
    stride = grid.plan.stride_level0
    cy, cx = _cells(shape[0], downsample, stride), _cells(shape[1], downsample, stride)
    kept = np.zeros((int(cy[-1]) + 1, int(cx[-1]) + 1), bool)
    cells = grid.coords // stride
    inside = (cells[:, 1] < kept.shape[0]) & (cells[:, 0] < kept.shape[1])
    kept[cells[inside, 1], cells[inside, 0]] = True
    covered = kept.take(cy, axis=0).take(cx, axis=1)  # two 1-D gathers: cheaper than one 2-D index
    new_x = np.concatenate([[True], cx[1:] != cx[:-1]])
    new_y = np.concatenate([[True], cy[1:] != cy[:-1]])
    return covered & (new_x[None, :] | new_y[:, None]) | _outline(covered)


def _grid_index(index: int) -> int:
    """Palette entry of the `index`-th magnification's colour."""
    return TISSUE_INDEX + 1 + index % len(COLOURS)


def _palette(quantised: Image.Image) -> list[int]:
    colours = (quantised.getpalette() or [])[: 3 * THUMBNAIL_COLOURS]
    colours += [0] * (3 * THUMBNAIL_COLOURS - len(colours))
    for colour in (WHITE, TISSUE_COLOUR, *COLOURS):
        colours += colour
    return colours


def render(thumbnail: np.ndarray, downsample: float, mask: TissueMask, grids: Sequence[Grid]) -> Image.Image:
    """The QC image: `thumbnail` (RGB, `downsample` level-0 pixels per pixel) with overlays and a legend,
    as a palette ("P") image."""
    height, width = thumbnail.shape[:2]
    quantised = Image.fromarray(np.ascontiguousarray(thumbnail)).quantize(
        THUMBNAIL_COLOURS, method=Image.Quantize.FASTOCTREE
    )
    canvas = np.full((height + LEGEND_HEIGHT, width), WHITE_INDEX, np.uint8)
    picture = canvas[:height]
    picture[:] = np.asarray(quantised)
    for index in reversed(range(len(grids))):  # finest first, so coarse borders stay visible on top
        picture[grid_lines((height, width), downsample, grids[index])] = _grid_index(index)
    scale = downsample / mask.downsample
    my = np.minimum(((np.arange(height) + 0.5) * scale).astype(np.intp), mask.mask.shape[0] - 1)
    mx = np.minimum(((np.arange(width) + 0.5) * scale).astype(np.intp), mask.mask.shape[1] - 1)
    tissue = mask.mask.take(my, axis=0).take(mx, axis=1)
    picture[dilate(_outline(tissue))] = TISSUE_INDEX
    image = Image.fromarray(canvas, mode="P")
    image.putpalette(_palette(quantised))
    draw = ImageDraw.Draw(image)
    x = 2
    for text, colour in [("tissue", TISSUE_INDEX)] + [
        (f"{g.plan.magnification.name}: {len(g)}", _grid_index(i)) for i, g in enumerate(grids)
    ]:
        draw.text((x, height + 2), text, fill=colour)
        x += int(draw.textlength(text)) + 12
    return image


def save(image: Image.Image, path: Path) -> None:
    """Write a QC image as the tile stage does (callers make the write atomic)."""
    image.save(path, **PNG_OPTIONS)
