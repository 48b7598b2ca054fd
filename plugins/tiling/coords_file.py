"""The coords file of one slide at one magnification: `coords/<magnification>/<slide_id>.h5`.

Datasets: `coords` [N, 2] int64 (level-0 x, y of each patch's top-left corner, the CLAM/TRIDENT
convention), `tissue_fraction` [N] float32, `parent` [N] int64 (finer magnifications: row of the
containing patch in the next coarser file) and `child_offsets` [M + 1] int64 (coarser magnifications:
patch i's children are rows child_offsets[i]:child_offsets[i + 1] of the next finer file).
The same attributes sit on the file and on `coords` (where CLAM and TRIDENT keep theirs).
Files are written atomically and without timestamps, so an unchanged rerun writes identical bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from histo.io import atomic_path

from .grid import Grid

FORMAT = "histo.coords/1"


def grid_attrs(grid: Grid) -> dict[str, Any]:
    """The attributes that describe the grid itself (the slide's are added by the caller)."""
    plan = grid.plan
    return {
        "format": FORMAT,
        "magnification": plan.magnification.name,
        "target_mpp": plan.magnification.mpp,
        "effective_mpp": plan.effective_mpp,
        "patch_size": plan.patch_size,
        "patch_size_level0": plan.patch_size_level0,
        "stride_level0": plan.stride_level0,
        "overlap": plan.overlap,
        "read_level": plan.read_level,
        "read_downsample": plan.read_downsample,
        "read_size": plan.read_size,
    }


def write_coords(path: Path, grid: Grid, attrs: Mapping[str, Any]) -> None:
    import h5py

    with atomic_path(path) as tmp, h5py.File(tmp, "w", track_order=False) as f:
        f.create_dataset("coords", data=grid.coords.astype(np.int64).reshape(-1, 2), track_times=False)
        f.create_dataset("tissue_fraction", data=grid.tissue.astype(np.float32), track_times=False)
        if grid.parent is not None:
            f.create_dataset("parent", data=grid.parent.astype(np.int64), track_times=False)
        if grid.child_offsets is not None:
            f.create_dataset("child_offsets", data=grid.child_offsets.astype(np.int64), track_times=False)
        for node in (f, f["coords"]):
            for key, value in {**grid_attrs(grid), **attrs}.items():
                node.attrs[key] = value


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value.item() if isinstance(value, np.generic) else value


@dataclass(frozen=True)
class CoordsFile:
    path: Path
    coords: np.ndarray
    attrs: dict[str, Any]
    tissue: np.ndarray | None = None
    parent: np.ndarray | None = None
    child_offsets: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.coords)


def read_coords(path: Path) -> CoordsFile:
    """Load a coords file (ours, or CLAM's/TRIDENT's: only `coords` is required)."""
    import h5py

    with h5py.File(path, "r") as f:
        attrs = {key: _plain(value) for key, value in f.attrs.items()}
        attrs.update({key: _plain(value) for key, value in f["coords"].attrs.items()})
        arrays = {name: np.asarray(f[name][()]) for name in f if isinstance(f[name], h5py.Dataset)}
    return CoordsFile(
        path=Path(path),
        coords=arrays.pop("coords").astype(np.int64).reshape(-1, 2),
        attrs=attrs,
        tissue=arrays.pop("tissue_fraction", None),
        parent=arrays.pop("parent", None),
        child_offsets=arrays.pop("child_offsets", None),
        extra=arrays,
    )
