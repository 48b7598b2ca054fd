"""Aligned patch grids from a tissue mask, vectorised: one integral image, box sums for every cell.

Rules (documented in docs/slides.md):
- every grid starts at level-0 (0, 0); a cell's origin must lie inside the slide;
- a patch is kept when the tissue fraction of its box (area outside the slide counts as glass)
  is at least `min_tissue`;
- a finer patch is kept only if its parent (the coarser patch containing it) is kept; with the
  "expand" parent rule a coarser patch is also kept when it contains a finer patch with enough tissue;
- the coarsest grid is in row-major order; a finer grid is grouped by parent (row-major within a
  parent), so a coarse patch's children are the contiguous rows child_offsets[i]:child_offsets[i+1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from histo.interfaces import TissueMask

from .plan import GridPlan


@dataclass(frozen=True)
class Grid:
    plan: GridPlan
    coords: np.ndarray  # int64 [N, 2]: level-0 (x, y) of each patch's top-left corner
    tissue: np.ndarray  # float32 [N]: tissue fraction of each patch
    parent: np.ndarray | None  # int64 [N]: row of the parent patch in the next coarser grid
    child_offsets: np.ndarray | None  # int64 [N + 1]: children rows in the next finer grid

    def __len__(self) -> int:
        return len(self.coords)


def integral_image(mask: np.ndarray) -> np.ndarray:
    """Summed-area table with a zero first row and column: box sums in four lookups."""
    table = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), np.int64 if mask.size >= 2**31 else np.int32)
    np.cumsum(np.cumsum(mask, axis=0, dtype=table.dtype), axis=1, out=table[1:, 1:])
    return table


def _edges(count: int, stride: int, size: int, downsample: float) -> tuple[np.ndarray, np.ndarray]:
    """Mask-pixel bounds [start, stop) of `count` cells; stop - start is the unclipped box width."""
    start = np.rint(np.arange(count, dtype=np.float64) * stride / downsample).astype(np.int64)
    stop = np.maximum(np.rint((np.arange(count) * stride + size) / downsample).astype(np.int64), start + 1)
    return start, stop


def tissue_fractions(
    table: np.ndarray,
    downsample: float,
    stride: int,
    size: int,
    cells: tuple[int, int],
    origin: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """Tissue fraction of every cell of a grid, [rows, cols]; outside the table counts as no tissue.

    `table` is the integral image of the part of the mask starting at mask pixel `origin` (row, col):
    tissue outside that part must be absent, as it is when the part is the mask's bounding box.
    """
    rows, cols = cells
    height, width = table.shape[0] - 1, table.shape[1] - 1
    x0, x1 = _edges(cols, stride, size, downsample)
    y0, y1 = _edges(rows, stride, size, downsample)
    area = (y1 - y0)[:, None] * (x1 - x0)[None, :]
    x0, x1 = np.clip(x0 - origin[1], 0, width), np.clip(x1 - origin[1], 0, width)
    y0, y1 = np.clip(y0 - origin[0], 0, height)[:, None], np.clip(y1 - origin[0], 0, height)[:, None]
    inside = table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]
    return (inside / area).astype(np.float32)


def _tissue_table(mask: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """Integral image of the mask's bounding box (much smaller than the mask on most slides)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not rows.size:
        return integral_image(mask[:0, :0]), (0, 0)
    box = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return integral_image(box), (int(rows[0]), int(cols[0]))


PARENT_RULES = ("strict", "expand")


def tile(
    mask: TissueMask,
    plans: Sequence[GridPlan],
    min_tissue: float,
    dimensions: tuple[int, int],
    parent_rule: str = "strict",
) -> list[Grid]:
    """One grid per plan (coarsest first, as `plan_grids` returns them), aligned and filtered.

    `parent_rule` "strict": a patch is judged on its own tissue, and a finer patch is dropped when its
    parent was. "expand": a coarser patch is also kept when it contains a kept finer patch, so the
    finer grid is the same as if it were tiled alone. Either way every finer patch has a kept parent.
    """
    if not 0 <= min_tissue <= 1:
        raise ValueError(f"min_tissue must be in [0, 1], got {min_tissue}")
    if parent_rule not in PARENT_RULES:
        raise ValueError(f"parent_rule must be one of {', '.join(PARENT_RULES)}, got {parent_rule!r}")
    table, origin = _tissue_table(mask.mask)
    width, height = dimensions
    fractions, keeps = [], []
    for plan in plans:
        cells = (math.ceil(height / plan.stride_level0), math.ceil(width / plan.stride_level0))
        fraction = tissue_fractions(
            table, mask.downsample, plan.stride_level0, plan.patch_size_level0, cells, origin
        )
        fractions.append(fraction)
        keeps.append(fraction >= min_tissue)
    factors = [plans[i - 1].ratio // plans[i].ratio if i else 1 for i in range(len(plans))]
    if parent_rule == "expand":
        for i in range(len(plans) - 1, 0, -1):  # finest up: a kept child keeps its parent
            iy, ix = np.nonzero(keeps[i])
            keeps[i - 1][iy // factors[i], ix // factors[i]] = True

    grids: list[Grid] = []
    parent_index = np.zeros((0, 0), np.int64)  # coarser grid cell -> row, -1 where dropped
    for i, plan in enumerate(plans):
        iy, ix = np.nonzero(keeps[i])  # row-major
        parent = None
        if i > 0:
            parent = parent_index[iy // factors[i], ix // factors[i]]
            has_parent = parent >= 0
            order = np.argsort(parent[has_parent], kind="stable")  # grouped by parent, row-major inside
            iy, ix, parent = iy[has_parent][order], ix[has_parent][order], parent[has_parent][order]
            counts = np.bincount(parent, minlength=len(grids[-1].coords))
            offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
            grids[-1] = replace(grids[-1], child_offsets=offsets)
        coords = np.stack([ix, iy], axis=1).astype(np.int64).reshape(-1, 2) * plan.stride_level0
        grids.append(Grid(plan, coords, fractions[i][iy, ix], parent, None))
        parent_index = np.full(keeps[i].shape, -1, np.int64)
        parent_index[iy, ix] = np.arange(len(iy))
    return grids
