"""QC images drawn and written on a background thread, off tiling's critical path.

Drawing the overlays and PNG-encoding a 1,024 px image took about as long again as reading its
thumbnail (0.25-0.3 s a slide on a 2-core CPU); both run mostly in numpy, SciPy and zlib, outside
the GIL, so one background thread overlaps them with segmenting the next slide. The tile stage hands
it the whole slide where the reader allows reads from other threads: cutting the thumbnail from the
segmenter's reads happens there too, and the thread closes the slide. The thread runs at a lower
priority, so it takes the core tiling leaves free rather than slowing the next slide's decode. At
most `pending` images wait at a time (each holds its slide's kept overview, a few MB to tens of MB).
Failures come back from `finish()`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

NICENESS = 19  # how far below the tiling threads the drawing thread runs (Linux niceness, per thread)


def _yield_to_tiling() -> None:
    """Lower this thread's scheduling priority: the drawing then takes a core only when tiling leaves
    one free, instead of slowing the next slide's decode, which runs on every core."""
    with contextlib.suppress(AttributeError, OSError):  # not on Linux, or not permitted: plain priority
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICENESS)


class QcWriter:
    def __init__(self, pending: int = 2) -> None:
        self._pool = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="histo-qc", initializer=_yield_to_tiling
        )
        self._pending = pending
        self._futures: list[tuple[str, Future[None]]] = []
        self._failures: list[tuple[str, BaseException]] = []

    def submit(self, slide_id: str, draw: Callable[[], None]) -> None:
        """Run `draw` (render and atomically write one slide's image) in the background."""
        self._futures.append((slide_id, self._pool.submit(draw)))
        while len(self._futures) > self._pending:
            self._collect(*self._futures.pop(0))

    def _collect(self, slide_id: str, future: Future[None]) -> None:
        exc = future.exception()
        if exc is not None:
            self._failures.append((slide_id, exc))

    def finish(self) -> list[tuple[str, BaseException]]:
        """Wait for every image; the slides whose image failed, with the error."""
        for slide_id, future in self._futures:
            self._collect(slide_id, future)
        self._futures.clear()
        self._pool.shutdown(wait=True)
        return self._failures
