"""Reading the tile stage's coordinate files: `coords/<magnification>/<slide_id>.h5`.

Each file holds `coords` [N, 2] int64 (level-0 x, y of each patch's top-left corner), `parent` for
finer magnifications (`child_offsets` for coarser ones, `tissue_fraction`), and attributes saying
how to read a patch (`read_level`, `read_size`, `patch_size`) and from which slide (`slide_path`,
`reader`, `source_mpp`, `mpp_source`). Attributes may sit on the file or on the `coords` dataset
(TRIDENT's habit); both are read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from histo.errors import HistoError
from histo.plugins.features.h5util import h5_attrs

REQUIRED = ("slide_id", "slide_path", "read_level", "read_size", "patch_size")
CARRIED = ("parent", "child_offsets", "tissue_fraction")  # datasets copied into the feature file


@dataclass(frozen=True)
class PatchGrid:
    """The patches of one slide at one magnification."""

    path: Path
    magnification: str
    coords: np.ndarray  # [N, 2] int64
    attrs: dict[str, Any]
    carried: dict[str, np.ndarray] = field(default_factory=dict)  # parent, child_offsets, tissue_fraction

    @property
    def slide_id(self) -> str:
        return str(self.attrs["slide_id"])

    @property
    def slide_path(self) -> Path:
        return Path(str(self.attrs["slide_path"]))

    @property
    def read_level(self) -> int:
        return int(self.attrs["read_level"])

    @property
    def read_size(self) -> int:
        return int(self.attrs["read_size"])

    @property
    def patch_size(self) -> int:
        return int(self.attrs["patch_size"])

    @property
    def parent(self) -> np.ndarray | None:
        return self.carried.get("parent")

    @property
    def reader(self) -> str | None:
        value = self.attrs.get("reader")
        return str(value) if value else None

    @property
    def reader_params(self) -> dict[str, Any] | None:
        """The reader's params as the tile stage recorded them in this file (JSON), if it did."""
        raw = self.attrs.get("reader_params")
        if not raw:
            return None
        try:
            params = json.loads(raw) if isinstance(raw, str) else None
        except json.JSONDecodeError:
            return None
        return params if isinstance(params, dict) else None

    @property
    def mpp_override(self) -> float | None:
        """The mpp the tile stage was told to use, which the slide must be reopened with."""
        if self.attrs.get("mpp_source") == "override" and self.attrs.get("source_mpp"):
            return float(self.attrs["source_mpp"])
        return None

    def __len__(self) -> int:
        return int(self.coords.shape[0])


def read_grid(path: Path, magnification: str) -> PatchGrid:
    """Load and check one coords file; a malformed one is a HistoError naming the file and the key."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "coords" not in f:
                raise HistoError(f"coords file {path} has no `coords` dataset; rerun the tile stage")
            coords = np.asarray(f["coords"][()], dtype=np.int64)
            carried = {name: np.asarray(f[name][()]) for name in CARRIED if name in f}
            attrs = h5_attrs(f, f["coords"])
    except OSError as exc:
        raise HistoError(f"cannot read coords file {path}: {exc}; rerun the tile stage") from exc
    missing = [key for key in REQUIRED if key not in attrs]
    if missing:
        raise HistoError(
            f"coords file {path} lacks the attribute(s) {', '.join(missing)}; it was not written by the "
            "tile stage (or by an older version): rerun the tile stage"
        )
    if coords.ndim != 2 or (coords.size and coords.shape[1] != 2):
        raise HistoError(f"coords file {path}: `coords` has shape {coords.shape}, expected [N, 2]")
    return PatchGrid(path, magnification, coords.reshape(-1, 2), attrs, carried)
