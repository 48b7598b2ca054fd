"""What readers and their users share: the missing-mpp message, region checks, compositing, low-res reads."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from histo.errors import MissingMppError, SlideReadError
from histo.interfaces import Slide


def slide_id_of(path: Path) -> str:
    """The slide id used across histo: the file name without its extension; a folder's name for a
    slide that is a folder (a DICOM series)."""
    return path.name if path.is_dir() else path.stem


def missing_mpp(slide_id: str, path: Path, looked_in: str, hint: str = "") -> MissingMppError:
    """The error for a slide without mpp: say which recipe keys fix it, never guess a value."""
    message = (
        f"slide {slide_id} ({path}): microns per pixel unknown ({looked_in}), so patches cannot be sized "
        f"at a fixed magnification. Give it in the tile stage's params, either "
        f"`mpp_overrides: {{{slide_id}: <microns per pixel>}}` or a row `{slide_id},<mpp>` in the CSV "
        f"named by `mpp_csv` (columns slide_id, mpp). Typical values: 40x scans ~0.25, 20x ~0.5."
    )
    if hint:
        message += f" {hint}"
    return MissingMppError(message)


def check_region(
    slide_id: str, location: tuple[int, int], level: int, size: tuple[int, int], levels: int
) -> None:
    """Reject requests no reader can honour, with the same message for every reader."""
    if not 0 <= level < levels:
        raise SlideReadError(f"slide {slide_id}: level {level} does not exist (it has {levels} levels)")
    if size[0] <= 0 or size[1] <= 0:
        raise SlideReadError(f"slide {slide_id}: region size {size} at {location} must be positive")


def to_rgb(image: Image.Image) -> np.ndarray:
    """RGB uint8 pixels of a PIL image; transparency (out-of-slide pixels) is composited onto white."""
    if "A" in image.getbands() or image.mode == "P":
        image = image.convert("RGBA")
        lowest_alpha = image.getchannel("A").getextrema()[0]
        if isinstance(lowest_alpha, int | float) and lowest_alpha < 255:
            image = Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image)
    # np.array, not asarray: callers may write into a patch (normalise in place, torch.from_numpy)
    return np.array(image if image.mode == "RGB" else image.convert("RGB"))


STRIP_BYTES = 64 * 2**20  # read a level in strips of about this size, so memory stays bounded
MIN_STRIP_ROWS = 128  # strips shared out between cores are at least this high: each read has a fixed cost


def read_downsampled(slide: Slide, downsample: float) -> tuple[np.ndarray, float]:
    """The whole slide as RGB at about `downsample` level-0 pixels per pixel, and the exact downsample.

    Reads the most downsampled level that is still at least as detailed, then box-averages by an
    integer factor, strip by strip, so a slide without a pyramid never needs its full level 0 in memory.
    A slide that allows concurrent reads has its strips decoded on all the cores this process may use
    (decoding is most of the time of segmentation and QC), where strips give the same pixels as one
    read: on levels whose downsample is a whole number (elsewhere a strip's level-0 origin falls
    between pixels, and readers interpolate).
    """
    level = 0
    for index, value in enumerate(slide.level_downsamples):
        if value <= downsample * 1.01:
            level = index
    level_downsample = slide.level_downsamples[level]
    factor = max(1, round(downsample / level_downsample))
    width, height = slide.level_dimensions[level]
    rows = max(factor, (STRIP_BYTES // (3 * width)) // factor * factor)
    workers = usable_cores() if slide.concurrent_reads and float(level_downsample).is_integer() else 1
    if workers > 1:
        share = -(-height // workers)
        rows = min(rows, max(-(-share // factor) * factor, -(-MIN_STRIP_ROWS // factor) * factor))

    def strip(top: int) -> np.ndarray:
        size = (width, min(rows, height - top))
        pixels = slide.read_region((0, round(top * level_downsample)), level, size)
        return np.asarray(Image.fromarray(pixels).reduce(factor)) if factor > 1 else pixels

    tops = range(0, height, rows)
    strips = list(read_pool().map(strip, tops)) if workers > 1 and len(tops) > 1 else [strip(t) for t in tops]
    image = strips[0] if len(strips) == 1 else np.concatenate(strips, axis=0)
    return image, slide.level_dimensions[0][0] / image.shape[1]


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and `taskset` narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def read_pool() -> ThreadPoolExecutor:
    """Threads for concurrent strip reads, started once per process."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(usable_cores(), thread_name_prefix="histo-read")
        return _pool


def _forget_pool() -> None:
    """A forked child has none of its parent's threads (and maybe a lock taken mid-fork): start afresh."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)
