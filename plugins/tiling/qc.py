"""QC picture of one slide: thumbnail, tissue outline, and the kept patches of each magnification.

Drawn with array operations at thumbnail scale (each thumbnail pixel looks up its grid cell), so
a slide with a million patches draws as fast as one with ten.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from histo.interfaces import Slide, TissueMask
from histo.plugins.readers.common import read_downsampled

from .grid import Grid

TISSUE_COLOUR = (0, 0, 0)
# Okabe-Ito colours, readable with colour-blindness: coarsest magnification first
COLOURS = ((0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (230, 159, 0), (86, 180, 233))
LEGEND_HEIGHT = 16


def thumbnail(slide: Slide, max_size: int) -> tuple[np.ndarray, float]:
    """An RGB overview whose longer side is at most `max_size`, read strip by strip, and its downsample."""
    width, height = slide.dimensions
    image, _ = read_downsampled(slide, max(max(width, height) / max_size, 1.0))
    scale = max(image.shape[:2]) / max_size
    if scale > 1:
        size = (max(1, round(image.shape[1] / scale)), max(1, round(image.shape[0] / scale)))
        image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX))
    return image, width / image.shape[1]


def _outline(region: np.ndarray) -> np.ndarray:
    return region & ~ndimage.binary_erosion(region, border_value=0)


def _cells(pixels: int, downsample: float, stride: int) -> np.ndarray:
    """Grid cell index of each thumbnail pixel's centre along one axis."""
    return ((np.arange(pixels) + 0.5) * downsample // stride).astype(np.int64)


def grid_lines(shape: tuple[int, int], downsample: float, grid: Grid) -> np.ndarray:
    """Boolean image of the kept cells' borders (the stride grid; overlaps are not drawn)."""
    stride = grid.plan.stride_level0
    cy, cx = _cells(shape[0], downsample, stride), _cells(shape[1], downsample, stride)
    kept = np.zeros((int(cy[-1]) + 1, int(cx[-1]) + 1), bool)
    cells = grid.coords // stride
    inside = (cells[:, 1] < kept.shape[0]) & (cells[:, 0] < kept.shape[1])
    kept[cells[inside, 1], cells[inside, 0]] = True
    covered = kept[cy[:, None], cx[None, :]]
    new_x = np.concatenate([[True], cx[1:] != cx[:-1]])
    new_y = np.concatenate([[True], cy[1:] != cy[:-1]])
    return covered & (new_x[None, :] | new_y[:, None]) | _outline(covered)


def render(thumbnail: np.ndarray, downsample: float, mask: TissueMask, grids: Sequence[Grid]) -> Image.Image:
    """The QC image: `thumbnail` (RGB, `downsample` level-0 pixels per pixel) with overlays and a legend."""
    height, width = thumbnail.shape[:2]
    canvas = thumbnail.copy()
    for index in reversed(range(len(grids))):  # finest first, so coarse borders stay visible on top
        canvas[grid_lines((height, width), downsample, grids[index])] = COLOURS[index % len(COLOURS)]
    scale = downsample / mask.downsample
    my = np.minimum(((np.arange(height) + 0.5) * scale).astype(np.int64), mask.mask.shape[0] - 1)
    mx = np.minimum(((np.arange(width) + 0.5) * scale).astype(np.int64), mask.mask.shape[1] - 1)
    tissue = mask.mask[my[:, None], mx[None, :]]
    canvas[ndimage.binary_dilation(_outline(tissue))] = TISSUE_COLOUR
    image = Image.new("RGB", (width, height + LEGEND_HEIGHT), (255, 255, 255))
    image.paste(Image.fromarray(canvas), (0, 0))
    draw = ImageDraw.Draw(image)
    x = 2
    for text, colour in [("tissue", TISSUE_COLOUR)] + [
        (f"{g.plan.magnification.name}: {len(g)}", COLOURS[i % len(COLOURS)]) for i, g in enumerate(grids)
    ]:
        draw.text((x, height + 2), text, fill=colour)
        x += int(draw.textlength(text)) + 12
    return image
