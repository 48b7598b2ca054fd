"""A bag of patch features as every later stage sees it, whichever tool wrote the file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FeatureBag:
    """Features [N, D] of one slide (at one magnification), with the patches' level-0 coordinates.

    `layout` says which tool wrote the file ("histo", "clam", "trident"; "pt" for a bare tensor file).
    When missing patches were dropped on reading, `rows` holds each remaining row's index in the file,
    which is what a finer magnification's `parent` refers to.
    """

    features: np.ndarray
    coords: np.ndarray | None
    attrs: dict[str, Any]
    path: Path
    layout: str
    rows: np.ndarray | None = None
    parent: np.ndarray | None = None

    @property
    def slide_id(self) -> str:
        return str(self.attrs.get("slide_id") or self.path.stem)

    @property
    def feature_dim(self) -> int:
        return int(self.features.shape[1])

    def __len__(self) -> int:
        return int(self.features.shape[0])
