"""Content hashes of weight files, so feature files say exactly which weights made them."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any


def file_sha256(path: Path | str) -> str:
    """sha256 of a file's bytes; cached per (path, size, mtime) because weight files are large."""
    path = Path(path).resolve()
    stat = path.stat()
    return _sha256(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extractor_hash(name: str, description: dict[str, Any]) -> str:
    """A short, stable id of (extractor name, everything that identifies its features)."""
    canonical = json.dumps({"name": name, **description}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
