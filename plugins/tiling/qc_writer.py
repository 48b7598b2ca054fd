"""QC images drawn and written on a background thread, off tiling's critical path.

Drawing the overlays and PNG-encoding a 1,024 px image took about as long again as reading its
thumbnail (0.25-0.3 s a slide on a 2-core CPU); both run mostly in numpy, SciPy and zlib, outside
the GIL, so one background thread overlaps them with segmenting the next slide. At most `pending`
images wait at a time (each holds its thumbnail, a few MB). Failures come back from `finish()`.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor


class QcWriter:
    def __init__(self, pending: int = 2) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="histo-qc")
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
