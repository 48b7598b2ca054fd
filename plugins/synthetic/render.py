"""One unit of work for the `synthesize` stage: paint one slide and write it (in any process).

A job carries only plain values, so process pools can pickle it; the slide depends on nothing but
the job, so any number of workers, in any order, gives the same files.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from histo.io import atomic_path

from .cohort import STREAM_TEXTURES, stream
from .slide import SlideFactors, paint_slide, stroma_textures
from .tiff import write_tiff

TEXTURE_VARIANTS = 4  # stroma textures per run; each slide uses one, from a random phase
PIL_BLOCKS = 16  # freed 16 MB image blocks Pillow keeps for reuse while painting


@dataclass(frozen=True)
class SlideJob:
    """Everything one worker needs to paint and write one slide (picklable, for process pools)."""

    path: Path
    slide_id: str
    width: int
    height: int
    mpp: float
    factors: SlideFactors
    seed: int
    keys: tuple[int, ...]  # random stream of this slide: (seed, *keys)
    tile: int
    quality: int


@lru_cache(maxsize=TEXTURE_VARIANTS)
def _textures(seed: int, mpp: float, variant: int) -> tuple[np.ndarray, np.ndarray]:
    """A few stroma textures per run, shared by its slides (made once per worker process)."""
    return stroma_textures(mpp, stream(seed, STREAM_TEXTURES, variant))


def render_slide(job: SlideJob) -> list[tuple[int, int]]:
    """Paint one slide and write it atomically; returns its level sizes."""
    rng = stream(job.seed, *job.keys)
    textures = _textures(job.seed, job.mpp, int(rng.integers(TEXTURE_VARIANTS)))
    image = paint_slide(job.width, job.height, job.mpp, job.factors, rng, textures)
    description = f"histo synthetic demo slide {job.slide_id}; mpp {job.mpp}"
    with atomic_path(job.path) as tmp:
        return write_tiff(tmp, image, job.mpp, job.tile, job.quality, description)


def keep_image_blocks() -> None:
    """Let Pillow reuse freed image memory (PILLOW_BLOCKS_MAX): painting makes and drops many
    slide-sized images, and fresh memory costs page faults (about a sixth of the CPU time).
    Meant as a worker-process initializer; in a shared process use `image_block_cache`."""
    Image.core.set_blocks_max(max(Image.core.get_blocks_max(), PIL_BLOCKS))


@contextmanager
def image_block_cache() -> Iterator[None]:
    """`keep_image_blocks` for the duration of a block, then the previous setting (and memory) back."""
    previous = Image.core.get_blocks_max()
    keep_image_blocks()
    try:
        yield
    finally:
        Image.core.set_blocks_max(previous)
