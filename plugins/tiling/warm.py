"""Warm what the first slide's outputs need, on a background thread while that slide is decoded.

A process pays once for importing h5py and its HDF5 library (0.1-0.3 s on a 2-core CPU), tifffile
(60 ms, for JPEG 2000 overviews) and Pillow's PNG encoder (about 20 ms) when it first needs them: the
first slide of a run took 0.1 s longer than the rest. Started with the tile stage, these imports run while
the first slide's overview is decoded (OpenSlide releases the GIL), so they leave its critical path
where a core is free; where none is, they cost what they did, once per process.
"""

from __future__ import annotations

import io
import threading


def _warm() -> None:
    try:
        import h5py  # noqa: F401
        import tifffile  # noqa: F401 - the JPEG 2000 overview reader's file parser (aperio_jp2k.py)
        from PIL import Image

        Image.new("P", (1, 1)).save(io.BytesIO(), format="PNG", compress_level=1)
    except Exception:  # a failure here shows again, with its context, where it matters
        pass


def warm_up() -> threading.Thread:
    """Start the imports in the background; join the thread to wait for them (tests, benchmarks)."""
    thread = threading.Thread(target=_warm, name="histo-warm-up", daemon=True)
    thread.start()
    return thread
