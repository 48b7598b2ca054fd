"""Plain images (PNG, JPEG, flat TIFF) read as slides: proves the Slide interface is not OpenSlide-shaped.

mpp comes from a per-slide override, else the resolution the file states (TIFF XResolution, PNG pHYs,
JPEG JFIF density; see image_resolution.py), else the reader's `mpp` param.
Pixels are decoded on first read (so a truncated file opens, then fails loudly on read) and the
virtual pyramid is built from 2x box downsamples on demand.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from histo.errors import SlideOpenError, SlideReadError
from histo.interfaces import Mpp, Slide, SlideReader

from . import IMAGE_EXTENSIONS, ImageConfig
from .common import check_region, missing_mpp, slide_id_of, to_rgb
from .image_resolution import file_resolution

BACKGROUND = 255  # out-of-image pixels read as white, like the glass around tissue


class ImageSlide(Slide):
    def __init__(
        self, path: Path, image: Image.Image, config: ImageConfig, mpp_override: float | None
    ) -> None:
        self.path = path
        self.slide_id = slide_id_of(path)
        self._image = image
        self._config = config
        self._override = mpp_override
        width, height = image.size
        dims = [(width, height)]
        while config.pyramid and min(dims[-1]) // 2 >= config.min_level_size:
            w, h = dims[-1]
            dims.append((math.ceil(w / 2), math.ceil(h / 2)))
        self._dimensions = tuple(dims)
        self._levels: list[np.ndarray] = []

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        return self._dimensions

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        return tuple(2.0**k for k in range(len(self._dimensions)))

    @property
    def mpp(self) -> Mpp:
        if self._override is not None:
            return Mpp(self._override, self._override, "override")
        stated = file_resolution(self._image)
        if stated is not None and stated.usable:
            return Mpp(stated.x, stated.y, "metadata")
        if self._config.mpp is not None:
            return Mpp(self._config.mpp, self._config.mpp, "config")
        looked_in = "the file states no resolution"
        if stated is not None:
            looked_in = (
                f"{stated.describe()}, a screen or print default rather than a microscope's, so it is ignored"
            )
        raise missing_mpp(
            self.slide_id,
            self.path,
            looked_in,
            "Or set the image reader's own `mpp` param when every image shares one pixel size.",
        )

    def _level(self, level: int) -> np.ndarray:
        """Pixels of `level` as RGB uint8, decoding level 0 and downsampling on first use."""
        if not self._levels:
            try:
                self._image.load()
                pixels = to_rgb(self._image)
            except (OSError, ValueError, SyntaxError) as exc:
                raise SlideReadError(
                    f"slide {self.slide_id} ({self.path}): cannot decode the image: {exc}. The file is "
                    "corrupt or truncated: re-export it or remove it from the slides folder."
                ) from None
            self._levels.append(np.ascontiguousarray(pixels))
        while len(self._levels) <= level:
            previous = Image.fromarray(self._levels[-1])
            self._levels.append(np.asarray(previous.reduce(2)))
        return self._levels[level]

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        check_region(self.slide_id, location, level, size, len(self._dimensions))
        pixels = self._level(level)
        scale = self.level_downsamples[level]
        x0, y0 = math.floor(location[0] / scale), math.floor(location[1] / scale)
        width, height = int(size[0]), int(size[1])
        out = np.full((height, width, 3), BACKGROUND, np.uint8)
        src_x0, src_y0 = max(x0, 0), max(y0, 0)
        src_x1, src_y1 = min(x0 + width, pixels.shape[1]), min(y0 + height, pixels.shape[0])
        if src_x1 > src_x0 and src_y1 > src_y0:
            out[src_y0 - y0 : src_y1 - y0, src_x0 - x0 : src_x1 - x0] = pixels[src_y0:src_y1, src_x0:src_x1]
        return out

    def close(self) -> None:
        self._image.close()
        self._levels.clear()


class ImageReader(SlideReader):
    extensions = IMAGE_EXTENSIONS

    def __init__(self, config: ImageConfig | None = None) -> None:
        self.config = config or ImageConfig()

    def open(self, path: Path, mpp_override: float | None = None) -> Slide:
        path = Path(path)
        if mpp_override is not None and not (math.isfinite(mpp_override) and mpp_override > 0):
            raise ValueError(f"mpp override for {path} must be a positive number, got {mpp_override!r}")
        if not path.is_file():
            raise SlideOpenError(f"image file {path} does not exist (or is not a file)")
        try:
            image = Image.open(path)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise SlideOpenError(
                f"cannot open image {path}: {exc}. The image reader reads PNG, JPEG and flat TIFF files "
                "up to Pillow's size limit; for scanner formats or pyramidal TIFFs use the openslide reader."
            ) from None
        return ImageSlide(path, image, self.config, mpp_override)
