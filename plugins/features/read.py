"""Reading feature bags written by histo, CLAM or TRIDENT, as they are.

- histo:   `features/<mag>/<slide>.h5`: features, coords, valid, [parent]; attributes on the file.
- CLAM:    `h5_files/<slide>.h5`: features [N, D] float32, coords [N, 2] int32, no attributes;
           `pt_files/<slide>.pt`: the same features as a torch tensor, without coords.
- TRIDENT: `features_<encoder>/<slide>.h5`: features [N, D], coords [N, 2] int64 whose attributes
           hold patch_size, patch_size_level0, level0_magnification, target_magnification, ...;
           the features dataset's attributes hold name and encoder. With `saveas: pt` the `.pt`
           holds a numpy array.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from histo.errors import HistoError

from .bag import FeatureBag
from .h5util import h5_attrs

TRIDENT_COORD_KEYS = ("patch_size_level0", "level0_magnification", "target_magnification")


def read_bag(path: Path | str, *, drop_missing: bool = True) -> FeatureBag:
    """Load one bag. With `drop_missing`, patches flagged missing (`valid` False) are left out."""
    path = Path(path)
    if not path.is_file():
        raise HistoError(f"feature file {path} does not exist")
    if path.suffix == ".pt":
        return _read_pt(path)
    if path.suffix in (".h5", ".hdf5"):
        return _read_h5(path, drop_missing)
    raise HistoError(f"{path}: unknown feature file type {path.suffix!r}; expected .h5 or .pt")


def _layout(root: dict[str, Any], features: dict[str, Any], coords: dict[str, Any]) -> str:
    if "extractor_hash" in root:
        return "histo"
    if "encoder" in features or any(key in coords for key in TRIDENT_COORD_KEYS):
        return "trident"
    return "clam"


def _read_h5(path: Path, drop_missing: bool) -> FeatureBag:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "features" not in f:
                raise HistoError(f"{path} has no `features` dataset; it is not a feature file (coords only?)")
            features = np.asarray(f["features"][()])
            coords = np.asarray(f["coords"][()], dtype=np.int64) if "coords" in f else None
            valid = np.asarray(f["valid"][()], dtype=bool) if "valid" in f else None
            parent = np.asarray(f["parent"][()], dtype=np.int64) if "parent" in f else None
            root = h5_attrs(f)
            feature_attrs = h5_attrs(f["features"])
            coord_attrs = h5_attrs(f["coords"]) if "coords" in f else {}
    except OSError as exc:
        raise HistoError(f"cannot read feature file {path}: {exc}") from exc
    layout = _layout(root, feature_attrs, coord_attrs)
    features = _as_matrix(features, path)
    if coords is not None:
        coords = coords.reshape(-1, 2)
        if len(coords) != len(features):
            raise HistoError(f"{path}: {len(features)} feature rows but {len(coords)} coords")
    attrs = {**coord_attrs, **feature_attrs, **root}
    rows = None
    if drop_missing and valid is not None and not valid.all():
        rows = np.flatnonzero(valid)
        features = features[rows]
        coords = coords[rows] if coords is not None else None
        parent = parent[rows] if parent is not None else None
    return FeatureBag(features, coords, attrs, path, layout, rows=rows, parent=parent)


def _as_matrix(features: np.ndarray, path: Path) -> np.ndarray:
    if features.ndim == 3 and features.shape[0] == 1:  # [1, N, D] from batch-of-one writers
        features = features[0]
    if features.ndim != 2:
        raise HistoError(f"{path}: features have shape {features.shape}, expected [N, D]")
    return features


def _numpy_safe_globals() -> list[Any]:
    """What torch's weights-only unpickler needs for plain numpy arrays (TRIDENT's .pt files)."""
    core = getattr(np, "_core", None) or np.core
    names = [core.multiarray._reconstruct, np.ndarray, np.dtype]
    names += [
        getattr(np.dtypes, n)
        for n in ("Float16DType", "Float32DType", "Float64DType")
        if hasattr(np, "dtypes")
    ]
    return names


def _read_pt(path: Path) -> FeatureBag:
    """A CLAM (tensor) or TRIDENT (numpy) .pt file; never unpickles code."""
    import torch
    from torch.serialization import safe_globals

    try:
        with safe_globals(_numpy_safe_globals()):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise HistoError(
            f"cannot read {path} as a feature tensor ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
            "it must hold a tensor or numpy array [N, D]"
        ) from exc
    if isinstance(data, torch.Tensor):
        features = data.float().numpy() if data.dtype == torch.bfloat16 else data.numpy()
    elif isinstance(data, np.ndarray):
        features = data
    else:
        raise HistoError(f"{path} holds a {type(data).__name__}; expected a tensor or numpy array [N, D]")
    return FeatureBag(_as_matrix(features, path), None, {"slide_id": path.stem}, path, "pt")
