"""Whole-slide images through OpenSlide: the formats scanners write (SVS, NDPI, MRXS, SCN, BIF, ...),
and DICOM series, given as their folder (see dicom_series.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import openslide

from histo.errors import SlideOpenError, SlideReadError
from histo.interfaces import Mpp, Slide, SlideReader

from . import OPENSLIDE_EXTENSIONS, OpenSlideConfig
from .aperio_jp2k import Jp2kLevelReader
from .common import check_region, missing_mpp, slide_id_of, to_rgb
from .dicom_series import DICOM_SUFFIX, Instance, check_series, level_file, series_folder


def _positive(value: str | None) -> float | None:
    """A metadata number that is usable as a pixel size, or None (absent, empty, zero, garbage)."""
    try:
        number = float(value) if value is not None else math.nan
    except ValueError:
        return None
    return number if math.isfinite(number) and number > 0 else None


class OpenSlideSlide(Slide):
    concurrent_reads = True  # OpenSlide handles are thread-safe and decode outside the GIL

    def __init__(
        self,
        path: Path,
        handle: openslide.OpenSlide,
        mpp_override: float | None,
        instances: list[Instance] | None = None,
        fast_jpeg2000: bool = True,
    ) -> None:
        self.path = path
        self.slide_id = slide_id_of(path)
        self._handle = handle
        self._override = mpp_override
        self._instances = instances or []  # a DICOM series' files, to name the one a read fails in
        self._dimensions = tuple((int(w), int(h)) for w, h in handle.level_dimensions)
        self._downsamples = tuple(float(d) for d in handle.level_downsamples)
        aperio = handle.properties.get(openslide.PROPERTY_NAME_VENDOR) == "aperio" and not self._instances
        # whole-level reads of JPEG 2000 levels decoded on all cores (same pixels; see aperio_jp2k.py)
        self._jp2k = Jp2kLevelReader(path, self._dimensions) if fast_jpeg2000 and aperio else None

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        return self._dimensions

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        return self._downsamples

    @property
    def properties(self) -> dict[str, str]:
        """The file's metadata as OpenSlide reports it (vendor keys included)."""
        return dict(self._handle.properties)

    @property
    def mpp(self) -> Mpp:
        if self._override is not None:
            return Mpp(self._override, self._override, "override")
        props = self._handle.properties
        mpp_x = _positive(props.get(openslide.PROPERTY_NAME_MPP_X))
        mpp_y = _positive(props.get(openslide.PROPERTY_NAME_MPP_Y))
        if mpp_x is not None or mpp_y is not None:
            return Mpp(mpp_x or mpp_y or 0.0, mpp_y or mpp_x or 0.0, "metadata")
        hint = ""
        power = _positive(props.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER))
        if power is not None:
            hint = (
                f"The file states objective power {power:g}x, which often means ~{10 / power:g} µm/px, "
                "but scanners differ: check the scanner's specification before setting it."
            )
        raise missing_mpp(self.slide_id, self.path, "no openslide.mpp-x/mpp-y in the file", hint)

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        check_region(self.slide_id, location, level, size, len(self._dimensions))
        x, y = int(location[0]), int(location[1])
        width, height = int(size[0]), int(size[1])
        if self._jp2k is not None:
            downsample = self._downsamples[level]  # OpenSlide's own mapping to level pixels
            pixels = self._jp2k.read(level, (x / downsample, y / downsample), (width, height))
            if pixels is not None:
                return pixels
        try:
            image = self._handle.read_region((x, y), level, (width, height))
        except openslide.OpenSlideError as exc:
            where, what = f"({self.path})", "The file is corrupt or truncated: re-copy or re-export it"
            if self._instances:
                holder = level_file(self._instances, self._dimensions[level])
                name = holder.name if holder else "a file of the series"
                where = f"(DICOM folder {self.path}, level {level} in {name})"
                what = f"{name} is complete but holds a frame that does not decode: re-export the series"
            raise SlideReadError(
                f"slide {self.slide_id} {where}: cannot read {width}x{height} pixels at level {level}, "
                f"level-0 location ({x}, {y}): {exc}. {what}, or remove it from the slides folder."
            ) from None
        return to_rgb(image)

    def close(self) -> None:
        self._handle.close()


class OpenSlideReader(SlideReader):
    """Opens anything OpenSlide supports; no fallback to other libraries, so failures are explicit."""

    extensions = OPENSLIDE_EXTENSIONS

    def __init__(self, config: OpenSlideConfig | None = None) -> None:
        self.config = config or OpenSlideConfig()

    def open(self, path: Path, mpp_override: float | None = None) -> Slide:
        path = Path(path)
        if mpp_override is not None and not (math.isfinite(mpp_override) and mpp_override > 0):
            raise ValueError(f"mpp override for {path} must be a positive number, got {mpp_override!r}")
        if path.is_dir() or path.suffix.lower() == DICOM_SUFFIX:
            return self._open_dicom(path, mpp_override)
        if not path.is_file():
            raise SlideOpenError(f"slide file {path} does not exist (or is not a file)")
        try:
            handle = openslide.OpenSlide(str(path))
        except (openslide.OpenSlideError, OSError, ValueError) as exc:
            raise SlideOpenError(
                f"cannot open slide {path} with OpenSlide: {exc}. The file is truncated, corrupt or not a "
                "format OpenSlide reads: re-copy it, convert it, or remove it from the slides folder."
            ) from None
        return OpenSlideSlide(path, handle, mpp_override, fast_jpeg2000=self.config.fast_jpeg2000)

    def _open_dicom(self, path: Path, mpp_override: float | None) -> Slide:
        """A DICOM series by its folder (or any of its files): every file checked, then the largest
        pyramid level's file handed to OpenSlide, which finds the rest of the series beside it."""
        folder = series_folder(path)
        if folder is None or not folder.is_dir():
            raise SlideOpenError(f"DICOM slide {path} does not exist; give the folder of its series")
        instances = check_series(folder)
        try:
            handle = openslide.OpenSlide(str(instances[0].path))
        except (openslide.OpenSlideError, OSError, ValueError) as exc:
            raise SlideOpenError(
                f"cannot open DICOM slide {folder} with OpenSlide through {instances[0].path.name}: {exc}. "
                "Every .dcm file passed the header and size checks, so the series is one OpenSlide does "
                "not support (e.g. a sparse tiling or a codec it lacks): convert it, or remove the folder."
            ) from None
        return OpenSlideSlide(folder, handle, mpp_override, instances)
