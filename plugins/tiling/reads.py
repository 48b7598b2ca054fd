"""A slide that keeps the regions it has read, so the QC thumbnail reuses the segmenter's pixels.

Segmentation reads the whole slide at about 8 µm/px, strip by strip; the QC thumbnail wants the
whole slide at about the same scale (1,024 px on the longer side) and usually picks the same pyramid
level. Decoding that level twice was most of what QC cost (on a slide without a pyramid it is all of
level 0). Requests that lie inside regions already read at the same level are cut out of them (the
same pixels); others go to the slide. Regions are kept up to `budget_bytes` in all.
"""

from __future__ import annotations

import threading

import numpy as np

from histo.interfaces import Mpp, Slide

DEFAULT_BUDGET_BYTES = 512 << 20  # an 8 µm/px overview of the largest slides is a few tens of MB


class RecordingSlide(Slide):
    """Wraps a slide; `read_region` answers from kept regions where it can (`reused` counts those)."""

    def __init__(self, slide: Slide, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        self.path, self.slide_id = slide.path, slide.slide_id
        self._slide = slide
        self._budget = budget_bytes
        self._kept: dict[int, list[tuple[int, int, np.ndarray]]] = {}  # level -> (x, y, pixels)
        self._bytes = 0
        self._lock = threading.Lock()  # strips may be read from several threads at once
        self.reused = 0

    @property
    def concurrent_reads(self) -> bool:
        return self._slide.concurrent_reads

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        return self._slide.level_dimensions

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        return self._slide.level_downsamples

    @property
    def mpp(self) -> Mpp:
        return self._slide.mpp

    def _level_xy(self, location: tuple[int, int], level: int) -> tuple[int, int]:
        """The level's pixel at level-0 `location` (readers map it back the same way)."""
        scale = self._slide.level_downsamples[level]
        return round(location[0] / scale), round(location[1] / scale)

    def _from_kept(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray | None:
        kept = self._kept.get(level)
        if not kept:
            return None
        x, y = self._level_xy(location, level)
        width, height = size
        out: np.ndarray | None = None
        covered = np.zeros((height, width), bool)
        for kx, ky, pixels in kept:
            x0, y0 = max(x, kx), max(y, ky)
            x1, y1 = min(x + width, kx + pixels.shape[1]), min(y + height, ky + pixels.shape[0])
            if x0 >= x1 or y0 >= y1:
                continue
            if out is None:
                out = np.empty((height, width, pixels.shape[2]), pixels.dtype)
            out[y0 - y : y1 - y, x0 - x : x1 - x] = pixels[y0 - ky : y1 - ky, x0 - kx : x1 - kx]
            covered[y0 - y : y1 - y, x0 - x : x1 - x] = True
        return out if out is not None and covered.all() else None

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        with self._lock:
            found = self._from_kept(location, level, size)
            if found is not None:
                self.reused += 1
                return found
        region = self._slide.read_region(location, level, size)
        level_location = self._level_xy(location, level)
        exact = tuple(round(v * self._slide.level_downsamples[level]) for v in level_location)
        with self._lock:
            if exact == tuple(location) and self._bytes + region.nbytes <= self._budget:
                self._kept.setdefault(level, []).append((*level_location, region.copy()))
                self._bytes += region.nbytes
        return region

    def forget(self) -> None:
        """Drop the kept regions (their memory) once nothing more will be read at their scale."""
        with self._lock:
            self._kept.clear()
            self._bytes = 0

    def close(self) -> None:
        self.forget()
        self._slide.close()
