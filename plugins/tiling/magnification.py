"""Target magnifications: `"20x"` means 10 / 20 = 0.5 µm/px; `{name, mpp}` names any pixel size.

Grids of several magnifications are tiled together only when they nest (each coarser mpp an integer
multiple of the next finer one), so that every finer patch lies inside exactly one coarser patch.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

MAGNIFICATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*[xX]\s*$")
MICRONS_AT_1X = 10.0  # convention: 20x = 0.5 µm/px, 40x = 0.25 µm/px


class Magnification(BaseModel):
    """A grid's resolution: a name (used as a folder name) and microns per pixel."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="folder-safe name, e.g. 20x")
    mpp: float = Field(gt=0, description="microns per pixel of the patches")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        if isinstance(data, str):
            match = MAGNIFICATION.match(data)
            if match is None:
                raise ValueError(
                    f"{data!r} is not a magnification: write e.g. '20x' (= 0.5 µm/px) or "
                    "{name: ..., mpp: ...} for an explicit pixel size"
                )
            power = float(match.group(1))
            if power <= 0:
                raise ValueError(f"magnification {data!r} must be above 0x")
            return {"name": f"{match.group(1)}x", "mpp": MICRONS_AT_1X / power}
        if isinstance(data, int | float) and not isinstance(data, bool):
            raise ValueError(f"{data!r}: write a magnification as '{data:g}x' or {{name: ..., mpp: ...}}")
        return data


MagnificationField = Annotated[
    Magnification,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*[xX]\s*$", "examples": ["10x", "20x"]},
                {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "mpp": {"type": "number", "exclusiveMinimum": 0},
                    },
                    "required": ["name", "mpp"],
                    "additionalProperties": False,
                },
            ]
        }
    ),
]  # the recipe schema offers both spellings, so editors accept "20x"


def nest(magnifications: Sequence[Magnification]) -> list[Magnification]:
    """The magnifications coarsest first, after checking that they nest; ValueError says how to fix them."""
    if not magnifications:
        raise ValueError("give at least one magnification, e.g. ['20x']")
    names = [m.name for m in magnifications]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"magnification names must be unique; repeated: {', '.join(repeated)}")
    ordered = sorted(magnifications, key=lambda m: -m.mpp)
    for coarse, fine in itertools.pairwise(ordered):
        ratio = coarse.mpp / fine.mpp
        if abs(ratio - round(ratio)) > 1e-6 * ratio or round(ratio) < 2:
            raise ValueError(
                f"magnifications {coarse.name} ({coarse.mpp:g} µm/px) and {fine.name} ({fine.mpp:g} µm/px) "
                "do not nest: each coarser mpp must be an integer multiple (2 or more) of the next finer "
                "one (e.g. 5x, 10x, 20x, 40x), so that finer patches lie inside coarser ones. Tile other "
                "combinations in separate tile stages."
            )
    return ordered


def ratio(coarse: Magnification, fine: Magnification) -> int:
    """How many fine patches span one coarse patch per axis (the magnifications must nest)."""
    value = coarse.mpp / fine.mpp
    if not math.isclose(value, round(value), rel_tol=1e-6):
        raise ValueError(f"{coarse.name} and {fine.name} do not nest")
    return round(value)
