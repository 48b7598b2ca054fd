"""What the teacher and the student share: checks on the model sizes and the per-view token grid."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from histo.blocks import require_features
from histo.errors import HistoError
from histo.interfaces import ModelDims

from .configs import _BranchConfig
from .layout import TokenLayout, build_layout


def require_slides(dims: ModelDims, name: str) -> None:
    require_features(dims, repr(name))
    bad = [view for view in dims.magnifications if "." in view or not view]
    if bad:
        raise HistoError(
            f"{name!r}: magnification names {bad} cannot name model parts (no '.' and not empty); "
            "rename them in the stage's `features:` section (e.g. '10x', '20x')"
        )


def view_layout(batch: Mapping[str, Any], view: str, config: _BranchConfig) -> TokenLayout:
    coords = batch.get("coords", {}).get(view)
    if config.layout == "coords" and coords is None:
        raise HistoError(
            f"layout 'coords' needs batch['coords'][{view!r}] (level-0 patch positions); "
            "set `layout: bag_order` for features without coordinates"
        )
    return build_layout(
        batch["mask"][view],
        coords,
        config.layout,
        config.patch_stride,
        config.max_grid_side,
        config.min_occupancy,
    )
