"""A torch Dataset over the patches of many slides, read in DataLoader workers.

Each worker opens a slide lazily on its first patch and keeps that one handle until its batches move
on to another slide (batches never mix slides, see `SlideBatches`), so a slide is opened once per
worker, not once per patch. A patch whose region cannot be read comes back flagged as missing with
the reason: it is never replaced by a blank tile.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from histo.interfaces import Slide, SlideReader

from .coords import PatchGrid


@dataclass(frozen=True)
class SlideSource:
    """Everything a worker needs to open a slide (picklable, for spawned workers)."""

    path: Path
    reader: SlideReader
    mpp_override: float | None = None

    def open(self) -> Slide:
        return self.reader.open(self.path, self.mpp_override)


@dataclass(frozen=True)
class PatchJob:
    """One bag to compute: the patches of a slide at one magnification."""

    source: SlideSource
    grid: PatchGrid

    def __len__(self) -> int:
        return len(self.grid)


RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


class PatchDataset(Dataset[tuple[torch.Tensor, int, int, bool, str]]):
    """Item i -> (RGB uint8 [S, S, 3], job index, row in that job, read ok, error message).

    Images stay uint8 and HWC until they reach the device: a quarter of the bytes through pinned
    memory, and a permute there gives a channels-last tensor for free.
    """

    def __init__(self, jobs: Sequence[PatchJob], input_size: int, interpolation: str = "bilinear") -> None:
        self.jobs = list(jobs)
        self.input_size = input_size
        self.resample = RESAMPLE[interpolation]
        self.offsets = [0]
        for job in self.jobs:
            self.offsets.append(self.offsets[-1] + len(job))
        self._slide: Slide | None = None
        self._slide_source: SlideSource | None = None
        self._open_error = ""

    def __len__(self) -> int:
        return self.offsets[-1]

    def locate(self, index: int) -> tuple[int, int]:
        job = bisect.bisect_right(self.offsets, index) - 1
        return job, index - self.offsets[job]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int, bool, str]:
        job_index, row = self.locate(index)
        job = self.jobs[job_index]
        slide = self._slide_for(job.source)
        if slide is None:
            return self._blank(), job_index, row, False, self._open_error
        x, y = (int(v) for v in job.grid.coords[row])
        size = job.grid.read_size
        try:
            pixels = slide.read_region((x, y), job.grid.read_level, (size, size))
            if pixels.shape != (size, size, 3):
                raise ValueError(f"reader returned {pixels.shape} pixels, expected ({size}, {size}, 3)")
            return torch.from_numpy(self._resize(pixels)), job_index, row, True, ""
        except Exception as exc:  # any reader failure marks this patch missing, with why
            return self._blank(), job_index, row, False, f"patch ({x}, {y}): {type(exc).__name__}: {exc}"

    def _blank(self) -> torch.Tensor:
        """A placeholder so the batch collates; flagged missing, it never reaches the model."""
        return torch.zeros(self.input_size, self.input_size, 3, dtype=torch.uint8)

    def _resize(self, pixels: np.ndarray) -> np.ndarray:
        """One resize from the read size straight to the model's input size (antialiased)."""
        if pixels.shape[0] == self.input_size:
            return np.ascontiguousarray(pixels)
        image = Image.fromarray(pixels).resize((self.input_size, self.input_size), self.resample)
        return np.asarray(image).copy()

    def _slide_for(self, source: SlideSource) -> Slide | None:
        if source != self._slide_source:
            self.close()
            self._slide_source = source
            try:
                self._slide = source.open()
                self._open_error = ""
            except Exception as exc:
                self._slide, self._open_error = (
                    None,
                    f"cannot open {source.path}: {type(exc).__name__}: {exc}",
                )
        return self._slide

    def close(self) -> None:
        if self._slide is not None:
            self._slide.close()
        self._slide, self._slide_source = None, None

    def __getstate__(self) -> dict[str, object]:  # never ship an open handle to a worker
        state = dict(self.__dict__)
        state.update(_slide=None, _slide_source=None)
        return state


class SlideBatches(Sampler[list[int]]):
    """Consecutive batches inside each job, jobs in order: batches never mix slides.

    So every bag sees the same batches whatever else runs, and one process per slide gives the same
    features as a single process over all slides.
    """

    def __init__(self, offsets: Sequence[int], batch_size: int) -> None:
        self.offsets = list(offsets)
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[list[int]]:
        for start, stop in zip(self.offsets[:-1], self.offsets[1:], strict=True):
            for first in range(start, stop, self.batch_size):
                yield list(range(first, min(first + self.batch_size, stop)))

    def __len__(self) -> int:
        return sum(
            -(-(stop - start) // self.batch_size)
            for start, stop in zip(self.offsets[:-1], self.offsets[1:], strict=True)
        )
