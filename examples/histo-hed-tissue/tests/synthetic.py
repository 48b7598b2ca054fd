"""A synthetic slide for the tests: stained tissue drawn with the stain model on white glass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from histo.errors import MissingMppError
from histo.interfaces import Mpp, Slide

from histo_hed_tissue.deconvolution import synthesise


class ArraySlide(Slide):
    """A one-level slide backed by an RGB array, so a segmenter can be tested without slide files."""

    def __init__(self, image: np.ndarray, mpp: float | None = 0.5, slide_id: str = "synthetic") -> None:
        self.image = image
        self._mpp = mpp
        self.slide_id = slide_id
        self.path = Path(f"{slide_id}.png")

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        return ((self.image.shape[1], self.image.shape[0]),)

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        return (1.0,)

    @property
    def mpp(self) -> Mpp:
        if self._mpp is None:
            raise MissingMppError(f"{self.path}: no mpp in the file; pass an mpp override")
        return Mpp(self._mpp, self._mpp, "test")

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        x, y = location
        return np.array(self.image[y : y + size[1], x : x + size[0]])


def disk(shape: tuple[int, int], centre: tuple[int, int], radius: float) -> np.ndarray:
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return np.asarray((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2)


def stained(
    regions: list[tuple[np.ndarray, tuple[float, float, float]]], shape: tuple[int, int], seed: int = 0
) -> np.ndarray:
    """RGB uint8 image: each (mask, stain amounts H/E/DAB) region painted on glass, plus sensor noise."""
    amounts = np.zeros((*shape, 3))
    for mask, stain in regions:
        amounts[mask] = stain
    rng = np.random.default_rng(seed)
    image = synthesise(amounts).astype(np.int16) + rng.integers(-4, 5, size=(*shape, 3))
    image[amounts.sum(axis=-1) == 0] -= 6  # glass is rarely pure white
    return np.asarray(np.clip(image, 0, 255), dtype=np.uint8)
