"""HDF5 attributes as plain Python values, and back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def plain(value: Any) -> Any:
    """An HDF5 attribute as a plain Python value (bytes -> str, numpy scalars/arrays -> Python)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()] if value.dtype.kind in "SO" else value.tolist()
    return value


def h5_attrs(*nodes: Any) -> dict[str, Any]:
    """Merge the attributes of HDF5 nodes (file, datasets), later nodes winning."""
    merged: dict[str, Any] = {}
    for node in nodes:
        merged.update({key: plain(value) for key, value in node.attrs.items()})
    return merged


def h5_value(value: Any) -> Any:
    """A value HDF5 can store as an attribute (None -> "", dicts and mixed lists -> JSON)."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return np.asarray(value)
        return json.dumps(list(value), default=str)
    if isinstance(value, Path):
        return str(value)
    return value
