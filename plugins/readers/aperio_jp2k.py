"""Whole-level reads of Aperio JPEG 2000 levels, decoded tile by tile with imagecodecs on all cores.

OpenSlide decodes an SVS file's JPEG 2000 tiles one after another on one core: a 2,221 x 1,783 px
overview level of a TCGA slide took 0.3-0.6 s, most of the time of segmenting and QC-ing the slide.
imagecodecs' OpenJPEG gives the same pixels (tested against OpenSlide on a real TCGA file) and
releases the GIL, so the tiles of one read are decoded on every core this process may use.

Only reads that OpenSlide would serve without interpolation take this path: a region inside the
level whose level-0 origin maps to a whole level pixel (OpenSlide interpolates at fractional
positions), at least `MIN_PIXELS` large (patch reads stay with OpenSlide, whose tile cache serves
neighbouring patches), on levels stored as Aperio's RGB JPEG 2000 (compression 33005). Anything
else, and any tile that is missing or does not decode, is left to OpenSlide, which gives the same
pixels or the error that names the file.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .common import read_pool, usable_cores

APERIO_JP2K_RGB = 33005  # Aperio's JPEG 2000 with RGB components (33003, YCbCr, is left to OpenSlide)
MIN_PIXELS = 1 << 20  # about 16 tiles of 256 px: overviews and thumbnails, not patches
READ_THREAD_PREFIX = "histo-read"


@dataclass(frozen=True)
class TiledLevel:
    """Where one level's tiles lie in the file."""

    width: int
    height: int
    tile_width: int
    tile_height: int
    offsets: tuple[int, ...]
    byte_counts: tuple[int, ...]

    @property
    def tiles_across(self) -> int:
        return -(-self.width // self.tile_width)


def jp2k_levels(path: Path, level_dimensions: tuple[tuple[int, int], ...]) -> dict[int, TiledLevel]:
    """The slide's levels stored as Aperio RGB JPEG 2000 tiles, by level index ({} for any other file).

    Levels are matched to TIFF pages by their size, the way OpenSlide's Aperio reader lists them.
    """
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            pages = [tif.pages[index] for index in range(len(tif.pages))]
            found: dict[int, TiledLevel] = {}
            for page in pages:
                if not isinstance(page, tifffile.TiffPage) or not _is_rgb_jp2k_tiles(page):
                    continue
                size = (int(page.imagewidth), int(page.imagelength))
                if size in level_dimensions:
                    found[level_dimensions.index(size)] = TiledLevel(
                        *size,
                        int(page.tilewidth),
                        int(page.tilelength),
                        tuple(int(v) for v in page.dataoffsets),
                        tuple(int(v) for v in page.databytecounts),
                    )
            return found
    except Exception:  # any file tifffile cannot parse is simply OpenSlide's to read
        return {}


def _is_rgb_jp2k_tiles(page: Any) -> bool:
    return bool(
        page.is_tiled
        and int(page.compression) == APERIO_JP2K_RGB
        and page.samplesperpixel == 3
        and page.bitspersample == 8
        and page.imagedepth == 1
        and int(page.planarconfig) == 1
    )


class Jp2kLevelReader:
    """Decodes regions of an SVS file's JPEG 2000 levels; `read` returns None where OpenSlide must."""

    def __init__(self, path: Path, level_dimensions: tuple[tuple[int, int], ...]) -> None:
        self.path = path
        self._dimensions = level_dimensions
        self._levels: dict[int, TiledLevel] | None = None  # parsed on the first large read
        self._lock = threading.Lock()

    def levels(self) -> dict[int, TiledLevel]:
        with self._lock:
            if self._levels is None:
                self._levels = jp2k_levels(self.path, self._dimensions)
            return self._levels

    def read(self, level: int, level_xy: tuple[float, float], size: tuple[int, int]) -> np.ndarray | None:
        """RGB pixels of `size` at level position `level_xy`, or None when this path does not apply."""
        width, height = size
        x, y = level_xy
        if width * height < MIN_PIXELS or not (float(x).is_integer() and float(y).is_integer()):
            return None
        tiled = self.levels().get(level)
        if tiled is None:
            return None
        left, top = int(x), int(y)
        if left < 0 or top < 0 or left + width > tiled.width or top + height > tiled.height:
            return None
        rows = range(top // tiled.tile_height, (top + height - 1) // tiled.tile_height + 1)
        cols = range(left // tiled.tile_width, (left + width - 1) // tiled.tile_width + 1)
        cells = [(row, col) for row in rows for col in cols]
        indices = [row * tiled.tiles_across + col for row, col in cells]
        if any(index >= len(tiled.byte_counts) or tiled.byte_counts[index] <= 0 for index in indices):
            return None  # a sparse level: OpenSlide knows how to fill it
        out = np.empty((height, width, 3), np.uint8)
        with open(self.path, "rb") as handle:
            descriptor = handle.fileno()

            def place(cell: tuple[int, int], index: int) -> bool:
                return _decode_into(out, descriptor, tiled, cell, index, (left, top))

            in_read_pool = threading.current_thread().name.startswith(READ_THREAD_PREFIX)
            if in_read_pool or usable_cores() == 1:  # a strip already read on a pool thread
                placed = [place(cell, index) for cell, index in zip(cells, indices, strict=True)]
            else:
                placed = list(read_pool().map(place, cells, indices))
        return out if all(placed) else None


def _decode_into(
    out: np.ndarray,
    descriptor: int,
    tiled: TiledLevel,
    cell: tuple[int, int],
    index: int,
    origin: tuple[int, int],
) -> bool:
    """Decode one tile and copy its part of the region into `out`; False when it does not decode."""
    import imagecodecs

    data = os.pread(descriptor, tiled.byte_counts[index], tiled.offsets[index])
    try:
        tile = imagecodecs.jpeg2k_decode(data)
    except Exception:
        return False
    if tile.dtype != np.uint8 or tile.shape != (tiled.tile_height, tiled.tile_width, 3):
        return False
    row, col = cell
    left, top = origin
    x0, y0 = col * tiled.tile_width, row * tiled.tile_height  # the tile's level position
    xs, ys = max(x0, left), max(y0, top)
    xe = min(x0 + tiled.tile_width, left + out.shape[1])
    ye = min(y0 + tiled.tile_height, top + out.shape[0])
    out[ys - top : ye - top, xs - left : xe - left] = tile[ys - y0 : ye - y0, xs - x0 : xe - x0]
    return True
