"""A word when patches are read at another resolution than the encoder was trained at.

Foundation models are trained at a given microns per pixel (most at 20x, 0.5 mpp); features of
patches at another one still compute, but are out of distribution. The run goes on; the log says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def tiled_mpp(tiles_root: Path) -> dict[str, float]:
    """Microns per pixel of each tiled magnification, from the tile stage's tiling.json."""
    try:
        tiling = json.loads((tiles_root / "tiling.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    out: dict[str, float] = {}
    for item in tiling.get("magnifications") or []:
        if isinstance(item, dict) and isinstance(item.get("mpp"), int | float):
            out[str(item.get("name"))] = float(item["mpp"])
    return out


def resolution_warnings(
    name: str, description: dict[str, Any], tiles_root: Path, magnifications: list[str]
) -> list[str]:
    """One message per magnification more than 10% away from the extractor's `expected_mpp`."""
    expected = description.get("expected_mpp")
    if not isinstance(expected, int | float):
        return []
    mpp = tiled_mpp(tiles_root)
    return [
        f"{name} was trained on patches at {expected:g} µm/px ({10 / expected:g}x); magnification {mag} "
        f"is read at {mpp[mag]:g} µm/px, so its features are out of the model's training distribution"
        for mag in magnifications
        if mag in mpp and abs(mpp[mag] / expected - 1) > 0.1
    ]
