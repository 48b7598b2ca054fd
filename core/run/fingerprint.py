"""Content-addressed cache keys: a stage is skipped when its key matches the finished one on disk."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def digest(data: Any) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def path_state(path: Path) -> Any:
    """Size and modification time of a file, or of every file below a folder (not their bytes:
    hashing 100 GB of slides on every run would cost more than the work it saves)."""
    if path.is_file():
        stat = path.stat()
        return [str(path), stat.st_size, stat.st_mtime_ns]
    if path.is_dir():
        entries = []
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = Path(root) / name
                stat = full.stat()
                entries.append([str(full.relative_to(path)), stat.st_size, stat.st_mtime_ns])
        return [str(path), entries]
    return [str(path), "missing"]


def stage_fingerprint(
    *,
    stage: str,
    package: str,
    package_version: str,
    stage_version: str,
    params: Any,
    seed: int,
    upstream: dict[str, str],
    inputs: list[Path],
    components: list[list[str]] | None = None,
    source: str = "",
) -> str:
    """`source` hashes the stage plugin's code when its version does not pin it (an editable or
    local plugin, see `histo.sources`); left out of the key when empty, so keys of stages from
    released packages stay what they were."""
    extra = {"source": source} if source else {}
    return digest(
        {
            **extra,
            "stage": stage,
            "package": package,
            "package_version": package_version,
            "stage_version": stage_version,
            "params": params,
            "seed": seed,
            "upstream": upstream,
            "inputs": [path_state(p) for p in inputs],
            "components": components or [],
        }
    )
