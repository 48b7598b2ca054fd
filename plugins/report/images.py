"""Images as data URIs, so the report is one file that opens anywhere, offline.

Plots are embedded byte for byte. Slide pictures (QC thumbnails, heatmaps) can be large, so they are
shrunk to a display size and re-encoded as JPEG: a report of dozens of slides stays a few megabytes.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif"}


def is_image(path: Path) -> bool:
    return path.suffix.lower() in MIME


def data_uri(path: Path, max_side: int | None = None, *, photo: bool = False) -> str:
    """`path` as a data URI; with `max_side`, shrunk to fit it and stored as JPEG if it was larger.

    `photo`: the picture is mostly a slide (QC, heatmap), where JPEG is a fraction of PNG's size and
    looks the same, so it is stored as JPEG whatever its size.
    """
    raw = Path(path).read_bytes()
    mime = MIME.get(Path(path).suffix.lower(), "application/octet-stream")
    if max_side is not None:
        shrunk = _shrink(raw, max_side, photo)
        if shrunk is not None:
            raw, mime = shrunk, "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}"


def _shrink(raw: bytes, max_side: int, photo: bool) -> bytes | None:
    """JPEG bytes of the image fitted into max_side x max_side, or None to keep the original."""
    from PIL import Image

    with Image.open(io.BytesIO(raw)) as image:
        if max(image.size) <= max_side and not photo:
            return None
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        flat.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        flat.save(buffer, format="JPEG", quality=85, optimize=True)
        return buffer.getvalue()
