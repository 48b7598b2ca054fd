"""Writing histo feature bags: one HDF5 per slide and magnification, streamed, committed atomically.

Layout of `features/<magnification>/<slide_id>.h5`:
    features  [N, D] float32 (or float16), NaN rows where a patch could not be read
    valid     [N] bool, False for those missing patches
    coords    [N, 2] int64, level-0 (x, y) of each patch's top-left corner (as in the coords file)
    parent    [N] int64, from the coords file when present (finer magnifications: row of the
              containing patch in the next coarser bag), likewise `child_offsets` and `tissue_fraction`
    attributes: every attribute of the coords file, plus extractor, extractor_config (JSON),
        extractor_hash, feature_dim, feature_dtype, n_patches, n_missing, histo_version
Datasets are contiguous and uncompressed, so whole bags read fast and can be memory-mapped, and
carry no timestamps, so the same features give the same bytes.

The file is written under a temporary name and renamed only when complete: a file with the final
name is always whole, which is what lets a resumed run trust it.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from histo.io import atomic_path

from .h5util import h5_value


class BagWriter:
    """Create a bag of `n` rows, fill it batch by batch, then `commit()` (or `abort()`)."""

    def __init__(
        self,
        target: Path,
        *,
        coords: np.ndarray,
        feature_dim: int,
        attrs: dict[str, Any],
        carried: dict[str, np.ndarray] | None = None,
        dtype: str = "float32",
    ) -> None:
        import h5py

        self.target = Path(target)
        self._stack = ExitStack()
        tmp = self._stack.enter_context(atomic_path(self.target))
        self._file = h5py.File(tmp, "w")
        n = int(coords.shape[0])
        self.n = n
        self._features = self._file.create_dataset(
            "features", shape=(n, feature_dim), dtype=dtype, track_times=False
        )
        self._valid = np.zeros(n, dtype=bool)
        self._file.create_dataset(
            "coords", data=np.asarray(coords, dtype=np.int64).reshape(n, 2), track_times=False
        )
        for name, data in (carried or {}).items():
            self._file.create_dataset(name, data=np.asarray(data), track_times=False)
        for key, value in {
            **attrs,
            "feature_dim": feature_dim,
            "feature_dtype": dtype,
            "n_patches": n,
        }.items():
            self._file.attrs[key] = h5_value(value)

    def write(self, rows: np.ndarray, features: np.ndarray, valid: np.ndarray) -> None:
        """Rows of one batch (consecutive in practice, then written as one slice)."""
        if len(rows) == 0:
            return
        first, last = int(rows[0]), int(rows[-1])
        if last - first + 1 == len(rows) and np.all(np.diff(rows) == 1):
            self._features[first : last + 1] = features
        else:
            order = np.argsort(rows)
            self._features[rows[order]] = features[order]
        self._valid[rows] = valid

    @property
    def n_missing(self) -> int:
        return int((~self._valid).sum())

    def commit(self) -> None:
        self._file.create_dataset("valid", data=self._valid, track_times=False)
        self._file.attrs["n_missing"] = self.n_missing
        self._file.close()
        self._stack.close()  # renames the temporary file onto the target

    def abort(self) -> None:
        """Drop the partial file; the target is left as it was."""
        if self._file.id.valid:
            self._file.close()
        self._stack.__exit__(RuntimeError, RuntimeError("aborted"), None)


def write_bag(
    target: Path,
    features: np.ndarray,
    coords: np.ndarray,
    attrs: dict[str, Any],
    *,
    valid: np.ndarray | None = None,
    parent: np.ndarray | None = None,
    dtype: str = "float32",
) -> Path:
    """Write a whole bag at once (same layout as the streamed writer)."""
    features = np.asarray(features)
    carried = {"parent": np.asarray(parent, dtype=np.int64)} if parent is not None else None
    writer = BagWriter(
        target, coords=coords, feature_dim=features.shape[1], attrs=attrs, carried=carried, dtype=dtype
    )
    ok = np.ones(len(features), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    try:
        writer.write(np.arange(len(features)), features, ok)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return Path(target)
