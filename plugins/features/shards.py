"""webdataset `.tar` shards of per-slide feature bags, for streaming training at scale.

One sample per (slide, magnification), with members
    <key>.features.npy   [n, D] features of the patches that were read (missing ones left out)
    <key>.coords.npy     [n, 2] int64 level-0 coordinates of those patches
    <key>.json           slide_id, magnification, n_patches, n_missing, feature_dim, and the bag's attributes
The key is the slide id made safe for webdataset (which splits keys at the first dot).
Shards are byte-for-byte reproducible (fixed member order, owner and mtime), written atomically,
and listed with their samples in `index.json`, which is written last.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from histo.io import atomic_path, write_json_atomic

from .read import read_bag

INDEX = "index.json"
SHARD_NAME = "shard-{:06d}.tar"


def sample_key(slide_id: str, magnification: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_-]+", "_", f"{slide_id}-{magnification}")
    key, n = base, 1
    while key in taken:
        n += 1
        key = f"{base}_{n}"
    taken.add(key)
    return key


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def _sample(key: str, bag_path: Path, magnification: str) -> dict[str, bytes]:
    bag = read_bag(bag_path, drop_missing=True)
    attrs = bag.attrs
    meta: dict[str, Any] = {
        "slide_id": bag.slide_id,
        "magnification": magnification,
        "n_patches": int(attrs.get("n_patches", len(bag))),
        "n_missing": int(attrs.get("n_missing", 0)),
        "feature_dim": bag.feature_dim,
        "attrs": attrs,
    }
    coords = bag.coords if bag.coords is not None else np.zeros((0, 2), np.int64)
    return {
        f"{key}.features.npy": _npy(bag.features),
        f"{key}.coords.npy": _npy(coords),
        f"{key}.json": json.dumps(meta, sort_keys=True, default=str).encode("utf-8"),
    }


class _Shard:
    """One shard being written: a temporary tar renamed into place by close()."""

    def __init__(self, path: Path) -> None:
        self.name = path.name
        self._stack = ExitStack()
        tmp = self._stack.enter_context(atomic_path(path))
        tar = tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115 - closed by the stack
        self._tar = self._stack.enter_context(tar)
        self.samples: list[dict[str, str]] = []
        self.size = 0

    def add(self, key: str, slide_id: str, magnification: str, members: dict[str, bytes]) -> None:
        for member, data in members.items():
            _add(self._tar, member, data)
        self.samples.append({"key": key, "slide_id": slide_id, "magnification": magnification})
        self.size += sum(_tar_size(data) for data in members.values())

    def close(self) -> dict[str, Any]:
        self._stack.close()
        return {"shard": self.name, "samples": self.samples, "bytes": self.size}

    def abort(self) -> None:
        """Leave no partial shard behind."""
        self._stack.__exit__(RuntimeError, RuntimeError("shard aborted"), None)


def _tar_size(data: bytes) -> int:
    return 512 + -(-len(data) // 512) * 512  # header + data padded to 512-byte blocks


def write_shards(
    bags: Iterable[tuple[str, str, Path]],
    out_dir: Path,
    *,
    max_samples: int = 64,
    max_bytes: int | None = None,
) -> dict[str, Any]:
    """Pack (slide_id, magnification, bag file) samples into shards; return (and write) the index.

    A shard closes when it holds `max_samples` samples or when the next sample would take it past
    `max_bytes` (a single larger sample still gets a shard of its own). One bag is in memory at a time.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / INDEX).unlink(missing_ok=True)
    for stale in out_dir.glob("shard-*.tar"):
        stale.unlink()
    shards: list[dict[str, Any]] = []
    taken: set[str] = set()
    shard: _Shard | None = None
    try:
        for slide_id, magnification, path in bags:
            key = sample_key(slide_id, magnification, taken)
            members = _sample(key, path, magnification)
            nbytes = sum(_tar_size(data) for data in members.values())
            if shard is not None and (
                len(shard.samples) >= max_samples
                or (max_bytes is not None and shard.size + nbytes > max_bytes)
            ):
                shards.append(shard.close())
                shard = None
            if shard is None:
                shard = _Shard(out_dir / SHARD_NAME.format(len(shards)))
            shard.add(key, slide_id, magnification, members)
        if shard is not None:
            shards.append(shard.close())
            shard = None
    finally:
        if shard is not None:
            shard.abort()
    index = {"format": "webdataset", "shards": shards}
    write_json_atomic(out_dir / INDEX, index)
    return index


def iter_shard(path: Path) -> Iterator[tuple[dict[str, Any], np.ndarray, np.ndarray]]:
    """(meta, features, coords) for each sample of one shard (plain tarfile; webdataset reads it too)."""
    grouped: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path, "r") as tar:
        for member in tar.getmembers():
            key, _, ext = member.name.partition(".")
            handle = tar.extractfile(member)
            if handle is not None:
                grouped.setdefault(key, {})[ext] = handle.read()
    for parts in grouped.values():
        meta = json.loads(parts["json"])
        features = np.load(io.BytesIO(parts["features.npy"]), allow_pickle=False)
        coords = np.load(io.BytesIO(parts["coords.npy"]), allow_pickle=False)
        yield meta, features, coords
