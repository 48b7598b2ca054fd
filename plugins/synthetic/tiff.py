"""Writes a painted slide as a pyramidal, tiled, JPEG-compressed TIFF that OpenSlide opens.

OpenSlide's "generic tiled TIFF": every level a tiled page, full resolution first, each next page
half the size; JPEG tiles in YCbCr with 2x2 chroma subsampling (like Aperio files); the pixel size
in XResolution/YResolution with ResolutionUnit centimetre, which OpenSlide reports as
`openslide.mpp-x` / `openslide.mpp-y`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def pyramid_sizes(width: int, height: int, tile: int) -> list[tuple[int, int]]:
    """(width, height) of every level: halved (rounding up) until the level fits in one tile."""
    sizes = [(width, height)]
    while max(sizes[-1]) > tile:
        w, h = sizes[-1]
        sizes.append(((w + 1) // 2, (h + 1) // 2))
    return sizes


def pyramid(image: Image.Image, tile: int) -> list[Image.Image]:
    """The image and its 2x box-filtered reductions, as `pyramid_sizes` lists them."""
    levels = [image]
    for _ in pyramid_sizes(*image.size, tile)[1:]:
        levels.append(levels[-1].reduce(2))
    return levels


def write_tiff(
    path: Path, image: Image.Image, mpp: float, tile: int, quality: int, description: str
) -> list[tuple[int, int]]:
    """Write `image` (RGB) with its pyramid to `path`; returns each level's (width, height)."""
    import tifffile

    levels = pyramid(image, tile)
    width, height = image.size
    with tifffile.TiffWriter(path, bigtiff=width * height * 3 > 2**31) as tif:
        for index, level in enumerate(levels):
            pixels_per_cm = 1e4 / (mpp * width / level.size[0])
            tif.write(
                np.asarray(level),
                photometric="rgb",
                tile=(tile, tile),
                compression="jpeg",
                compressionargs={"level": quality},
                resolution=(pixels_per_cm, pixels_per_cm),
                resolutionunit="CENTIMETER",
                subfiletype=0 if index == 0 else 1,  # 1 = reduced-resolution image
                description=description if index == 0 else None,
                software="histo synthesize",
                metadata=None,
            )
    return [level.size for level in levels]
