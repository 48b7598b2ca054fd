"""Slides and the readers that open them. Coordinates are level-0 pixels, (x, y), top-left origin."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np


@dataclass(frozen=True)
class Mpp:
    """Microns per level-0 pixel, with where the value came from ("metadata", "override", ...)."""

    x: float
    y: float
    source: str

    @property
    def mean(self) -> float:
        return (self.x + self.y) / 2


class Slide(ABC):
    """An open whole-slide image (or a plain image treated as one)."""

    path: Path
    slide_id: str
    # True when `read_region` may be called from several threads at once (OpenSlide handles may):
    # whole-slide overviews are then decoded in strips on all free cores. Off unless a reader says so.
    concurrent_reads: bool = False

    @property
    @abstractmethod
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        """(width, height) of every pyramid level, level 0 first."""

    @property
    @abstractmethod
    def level_downsamples(self) -> tuple[float, ...]:
        """Level-0 pixels per pixel of each level."""

    @property
    @abstractmethod
    def mpp(self) -> Mpp:
        """Microns per level-0 pixel; raises MissingMppError when unknown and not overridden."""

    @abstractmethod
    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """RGB uint8 array [height, width, 3] of `size` pixels at `level`, starting at level-0 `location`.

        Raises SlideReadError when the pixels cannot be read: never returns a blank tile instead.
        """

    @property
    def dimensions(self) -> tuple[int, int]:
        return self.level_dimensions[0]

    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    def best_level_for_downsample(self, downsample: float) -> int:
        """The most reduced level that is still at least as detailed as `downsample`."""
        best = 0
        for level, d in enumerate(self.level_downsamples):
            if d <= downsample * (1 + 1e-6):
                best = level
        return best

    def thumbnail(self, max_size: int) -> tuple[np.ndarray, float]:
        """An RGB image whose longer side is at most `max_size`, and its downsample from level 0."""
        from PIL import Image

        width, height = self.dimensions
        target = max(width, height) / max_size
        level = self.best_level_for_downsample(max(target, 1.0))
        image = self.read_region((0, 0), level, self.level_dimensions[level])
        scale = max(image.shape[:2]) / max_size
        if scale > 1:
            new_size = (max(1, round(image.shape[1] / scale)), max(1, round(image.shape[0] / scale)))
            image = np.asarray(Image.fromarray(image).resize(new_size, Image.Resampling.BOX))
        return image, width / image.shape[1]

    def close(self) -> None:  # noqa: B027 - optional for readers without handles
        """Release file handles."""

    def __enter__(self) -> Slide:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class SlideReader(ABC):
    """Opens slide files of the formats it supports."""

    extensions: tuple[str, ...] = ()

    def can_open(self, path: Path) -> bool:
        return path.suffix.lower() in self.extensions

    @abstractmethod
    def open(self, path: Path, mpp_override: float | None = None) -> Slide:
        """Open `path`; raise SlideOpenError naming the file when it cannot be opened.

        `mpp_override` (microns per pixel) takes precedence over the file's metadata and is recorded
        as the source "override".
        """
