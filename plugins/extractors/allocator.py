"""glibc malloc kept from handing a model's large activations back to the kernel between batches.

glibc serves every allocation above its mmap threshold (at most 32 MiB, however it adapts) with a
fresh `mmap` and unmaps it on free. A CNN's activations at batch 64 are 100-300 MB each, so every
layer of every batch page-faults its output in again: on a 2-core CPU EfficientNet-Lite0 then spent
more time in the kernel than in the model. While `tuned_malloc()` is active, those blocks come from
the heap (mmap threshold 1 GiB) and freed memory stays there for the next batch (no trimming); on
exit the thresholds go back to glibc's ceiling for its adaptive ones and the heap is trimmed once, so
later stages of the run do not keep extraction's peak.

`mallopt` changes the running process (and readers it forks afterwards), so no environment variable
has to be set before start-up. It does nothing where the C library is not glibc (musl, macOS,
Windows) or under another allocator preloaded (jemalloc, tcmalloc: configure that one instead), and
`HISTO_MALLOC_TUNING=0` turns it off. Training and inference use it too, with lower thresholds
(`histo.plugins.training.heap.model_heap`).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from collections.abc import Iterator

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
HEAP_MMAP_THRESHOLD = 1 << 30  # blocks below 1 GiB from the heap: every activation of a batch
HEAP_TRIM_THRESHOLD = (1 << 31) - 1  # mallopt takes an int: never trim while extracting
GLIBC_MMAP_CEILING = 32 << 20  # where glibc's adaptive thresholds end up (DEFAULT_MMAP_THRESHOLD_MAX)
GLIBC_TRIM_CEILING = 2 * GLIBC_MMAP_CEILING
ENV = "HISTO_MALLOC_TUNING"


def _glibc() -> ctypes.CDLL | None:
    """The process's C library if it is glibc with `mallopt`, else None."""
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "off", "no"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    return libc


def _set(libc: ctypes.CDLL, mmap_threshold: int, trim_threshold: int) -> bool:
    return bool(libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, trim_threshold)
    )


_depth = 0  # nesting of active tuned_malloc() blocks in this process


@contextlib.contextmanager
def tuned_malloc(
    mmap_threshold: int = HEAP_MMAP_THRESHOLD, trim_threshold: int = HEAP_TRIM_THRESHOLD
) -> Iterator[bool]:
    """Blocks below `mmap_threshold` bytes from a heap trimmed only when more than `trim_threshold`
    bytes are free at its top, for the block; yields whether it applied. Nested blocks keep the
    outermost one's settings."""
    global _depth
    libc = _glibc()
    if libc is None or (_depth == 0 and not _set(libc, mmap_threshold, trim_threshold)):
        yield False
        return
    _depth += 1
    try:
        yield True
    finally:
        _depth -= 1
        if _depth == 0:
            _set(libc, GLIBC_MMAP_CEILING, GLIBC_TRIM_CEILING)
            libc.malloc_trim(0)
