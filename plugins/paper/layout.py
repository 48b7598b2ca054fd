"""Where each patch token sits on a 2-D grid, and sparse look-ups on that grid.

Deformable attention samples keys at fractional grid positions. A slide's tissue covers a ragged part
of its bounding box, so the grid is kept sparse: a sorted table of occupied cells (patches sharing a
cell are averaged) that bilinear sampling reads by binary search. Memory is O(N), never O(H x W), which
is what lets a 100,000-patch bag through.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor


@dataclass(frozen=True)
class TokenLayout:
    """Grid positions of a padded batch of bags; one layout serves every attention layer of a view."""

    mask: Tensor  # [B, N] bool, True = real patch
    row: Tensor  # [B, N] long (0 at padding)
    col: Tensor  # [B, N] long
    height: Tensor  # [B] long >= 1: rows of each bag's grid
    width: Tensor  # [B] long >= 1
    cell: Tensor  # [B, N] long: row of the cell table holding the token (num_cells at padding)
    cell_keys: Tensor  # [U] sorted keys b * H*W + row * W + col of the occupied cells
    cell_count: Tensor  # [U] tokens per occupied cell (float)
    grid_height: int  # max rows over the batch
    grid_width: int  # max columns over the batch
    _occupancy: dict[int, Tensor] = field(default_factory=dict, compare=False, repr=False)
    _windows: dict[tuple[int, int, int, int], Tensor] = field(default_factory=dict, compare=False, repr=False)
    _held: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def num_cells(self) -> int:
        return int(self.cell_keys.numel())

    def _key(self, b: Tensor, row: Tensor, col: Tensor) -> Tensor:
        return (b * self.grid_height + row) * self.grid_width + col

    def cell_table(self, x: Tensor) -> Tensor:
        """Mean of the tokens x [B, N, C] in each occupied cell: [U + 1, C]; the last row is zeros, the
        value read for an empty cell. Kept for the last x (the same tensor, unchanged, in the same grad
        mode): the teacher's gene groups each sample the same patch tokens."""
        # (an inference tensor keeps no version: nothing in a pass writes into the tokens it samples)
        key = (None if x.is_inference() else x._version, torch.is_grad_enabled())
        held = self._held.get("cell_table")
        if held is not None and held[0] is x and held[1] == key:
            return held[2]
        values = x[self.mask]
        table = x.new_zeros(self.num_cells + 1, x.shape[-1])
        table = table.index_add(0, self.cell[self.mask], values)
        table = table / torch.cat([self.cell_count, self.cell_count.new_ones(1)]).unsqueeze(-1)
        self._held["cell_table"] = (x, key, table)
        return table

    def line_positions(self) -> tuple[Tensor, Tensor]:
        """Every grid column's and row's position in [-1, 1] of its bag: [B, grid_width], [B, grid_height]
        (cached: each attention layer's position bias reads them)."""
        if "lines" not in self._held:
            batch, device = self.mask.shape[0], self.mask.device
            columns = _normalise(torch.arange(self.grid_width, device=device).expand(batch, -1), self.width)
            rows = _normalise(torch.arange(self.grid_height, device=device).expand(batch, -1), self.height)
            self._held["lines"] = (columns, rows)
        return self._held["lines"]

    def lookup(self, b: Tensor, row: Tensor, col: Tensor) -> Tensor:
        """Cell-table row of integer grid positions (any shape); num_cells where the cell is empty or
        outside its bag's grid."""
        inside = (row >= 0) & (col >= 0) & (row < self.height[b]) & (col < self.width[b])
        if self.num_cells == 0:
            return torch.zeros_like(row)
        key = self._key(b, row.clamp(min=0), col.clamp(min=0))
        index = torch.searchsorted(self.cell_keys, key.reshape(-1)).reshape(key.shape)
        found = inside & (self.cell_keys[index.clamp(max=self.num_cells - 1)] == key)
        return torch.where(found, index, torch.full_like(index, self.num_cells))

    def normalised_positions(self) -> tuple[Tensor, Tensor]:
        """Token positions scaled to [-1, 1] over each bag's own grid (0 for a one-cell side): x, y [B, N]."""
        return _normalise(self.col, self.width), _normalise(self.row, self.height)

    def occupancy(self, size: int) -> Tensor:
        """[B, size, size] bool: the bins of `pool_to_map` that hold a token (cached per size)."""
        if size not in self._occupancy:
            self._occupancy[size] = self.pool_to_map(None, size)[1]
        return self._occupancy[size]

    def occupancy_windows(self, size: int, kernel: int, stride: int, padding: int) -> Tensor:
        """[B, positions, kernel^2] float: the zero-padded occupancy under each window of a convolution
        (kernel, stride, padding) over the size x size map, positions in row-major order (cached)."""
        key = (size, kernel, stride, padding)
        if key not in self._windows:
            occupied = self.occupancy(size).to(torch.float32).unsqueeze(1)  # [B, 1, S, S]
            windows = torch.nn.functional.unfold(occupied, kernel, padding=padding, stride=stride)
            self._windows[key] = windows.transpose(1, 2).contiguous()
        return self._windows[key]

    def pool_to_map(self, x: Tensor | None, size: int) -> tuple[Tensor | None, Tensor]:
        """Area-average each bag's grid onto a size x size map (cells repeat when the grid is smaller).

        Returns the map [B, C, size, size] of the mean token per bin (zeros where empty; None when x is
        None) and the occupancy [B, size, size] (True where a bin holds a token).
        """
        maps, occupancy = [], []
        for b in range(self.mask.shape[0]):
            keep = self.mask[b]
            bins, tokens = _bins(
                self.row[b, keep], int(self.height[b]), self.col[b, keep], int(self.width[b]), size
            )
            counts = torch.zeros(size * size, device=bins.device).index_add_(
                0, bins, torch.ones(bins.shape, device=bins.device)
            )
            occupancy.append(counts > 0)
            if x is not None:
                sums = x.new_zeros(size * size, x.shape[-1]).index_add(0, bins, x[b, keep][tokens])
                maps.append(sums / counts.clamp_min(1).to(x.dtype).unsqueeze(-1))
        grid = torch.stack(occupancy).view(-1, size, size)
        if x is None:
            return None, grid
        return torch.stack(maps).view(-1, size, size, x.shape[-1]).permute(0, 3, 1, 2), grid


def _normalise(index: Tensor, extent: Tensor) -> Tensor:
    """Grid index -> [-1, 1] across the bag's extent; a one-cell extent maps to 0."""
    extent = extent.unsqueeze(-1)
    scaled = 2 * index.to(torch.float32) / (extent - 1).clamp(min=1).to(torch.float32) - 1
    return torch.where(extent > 1, scaled, torch.zeros_like(scaled))


def _axis_bins(index: Tensor, extent: int, size: int) -> tuple[Tensor, Tensor]:
    """First bin and bin count of each grid line: a partition of the extent onto `size` bins."""
    low = torch.div(index * size, extent, rounding_mode="floor")
    high = torch.maximum(low + 1, torch.div((index + 1) * size, extent, rounding_mode="floor"))
    return low, high - low


def _bins(row: Tensor, height: int, col: Tensor, width: int, size: int) -> tuple[Tensor, Tensor]:
    """(bin, token) pairs: every bin each token's cell covers on the size x size map."""
    if row.numel() == 0:
        return row, row
    row_low, row_span = _axis_bins(row, height, size)
    col_low, col_span = _axis_bins(col, width, size)
    steps_r = torch.arange(int(row_span.max()), device=row.device)
    steps_c = torch.arange(int(col_span.max()), device=row.device)
    rows = row_low[:, None] + steps_r
    cols = col_low[:, None] + steps_c
    valid = (steps_r < row_span[:, None])[:, :, None] & (steps_c < col_span[:, None])[:, None, :]
    bins = rows[:, :, None] * size + cols[:, None, :]
    tokens = torch.arange(len(row), device=row.device)[:, None, None].expand_as(bins)
    return bins[valid], tokens[valid]


def _bag_order(n: int, device: torch.device) -> tuple[Tensor, Tensor, int, int]:
    side = max(1, math.ceil(math.sqrt(n)))
    rank = torch.arange(n, device=device)
    return rank // side, rank % side, max(1, math.ceil(n / side)), side


def _lattice_step(xy: Tensor) -> float | None:
    """The patch stride of a bag: the smallest positive gap between two patches of the same row or of
    the same column. Within a line, and not between any two coordinates, because CLAM starts each
    tissue contour's grid at that contour's corner: two contours' columns may sit a few pixels apart,
    but patches sharing a row are whole strides apart."""
    gaps = []
    for axis in (0, 1):
        along, line = xy[:, axis], xy[:, 1 - axis]
        order = torch.argsort(along, stable=True)
        order = order[torch.argsort(line[order], stable=True)]  # by line, then along it
        step = torch.diff(along[order])
        same_line = torch.diff(line[order]).abs() < 0.5  # coordinates are pixels
        gaps.append(step[same_line & (step >= 0.5)])
    found = torch.cat(gaps)
    if not found.numel():  # no two patches share a line: any gap between distinct coordinates
        found = torch.cat([torch.diff(torch.unique(xy[:, axis])) for axis in (0, 1)])
        found = found[found >= 0.5]
    return float(found.min()) if found.numel() else None


def _coarsen(cells: Tensor, factor: int) -> tuple[Tensor, int, int]:
    cells = torch.div(cells, factor, rounding_mode="floor")
    return cells, int(cells[:, 1].max()) + 1, int(cells[:, 0].max()) + 1


def _from_coords(
    xy: Tensor, stride: float | None, max_side: int, min_occupancy: float
) -> tuple[Tensor, Tensor, int, int] | None:
    """Grid cells of one bag from its level-0 coordinates; None when they carry no geometry.

    Two guards keep the grid useful: a side longer than `max_side` (a wrong or tiny stride) and a grid
    too sparse for bilinear reads to find patches (a bag subsampled at random, e.g. 2,500 of 50,000
    patches) are both coarsened by an integer factor; patches sharing a cell are then averaged as keys.
    """
    if stride is None:
        stride = _lattice_step(xy)
        if stride is None:
            return None
    cells, height, width = _coarsen(torch.round((xy - xy.min(dim=0).values) / stride).long(), 1)
    if max(height, width) > max_side:
        cells, height, width = _coarsen(cells, math.ceil(max(height, width) / max_side))
    for _ in range(4):  # merging cells lowers the count too: a few rounds reach the target
        occupied = int(torch.unique(cells[:, 1] * width + cells[:, 0]).numel())
        if occupied >= min_occupancy * height * width:
            break
        cells, height, width = _coarsen(
            cells, math.ceil(math.sqrt(min_occupancy * height * width / occupied))
        )
    return cells[:, 1], cells[:, 0], height, width


def build_layout(
    mask: Tensor,
    coords: Tensor | None,
    mode: Literal["coords", "bag_order"],
    patch_stride: float | None = None,
    max_grid_side: int = 1024,
    min_occupancy: float = 0.1,
) -> TokenLayout:
    """Place the real tokens of each bag on its grid (padding is ignored wherever it sits)."""
    batch, n = mask.shape
    device = mask.device
    row = torch.zeros(batch, n, dtype=torch.long, device=device)
    col = torch.zeros_like(row)
    heights, widths = [], []
    for b in range(batch):
        keep = mask[b]
        count = int(keep.sum())
        placed = None
        if mode == "coords" and count > 1:
            if coords is None:
                raise ValueError(
                    "layout 'coords' needs batch['coords']; set layout: bag_order for bags without"
                )
            xy = coords[b, keep].to(torch.float64)
            placed = _from_coords(xy, patch_stride, max_grid_side, min_occupancy)
            if placed is None:
                warnings.warn(
                    "a bag's patch coordinates are all equal (no coordinates in its feature file?): "
                    "placing its patches in bag order",
                    stacklevel=3,
                )
        if placed is None:
            placed = _bag_order(count, device)
        r, c, h, w = placed
        row[b, keep] = r.to(device)
        col[b, keep] = c.to(device)
        heights.append(h)
        widths.append(w)
    height = torch.tensor(heights, dtype=torch.long, device=device)
    width = torch.tensor(widths, dtype=torch.long, device=device)
    grid_height, grid_width = max(heights, default=1), max(widths, default=1)
    b_index = torch.arange(batch, device=device)[:, None].expand(batch, n)
    keys = ((b_index * grid_height + row) * grid_width + col)[mask]
    cell_keys, inverse, counts = torch.unique(keys, sorted=True, return_inverse=True, return_counts=True)
    cell = torch.full_like(row, int(cell_keys.numel()))
    cell[mask] = inverse
    return TokenLayout(
        mask=mask,
        row=row,
        col=col,
        height=height,
        width=width,
        cell=cell,
        cell_keys=cell_keys,
        cell_count=counts.to(torch.float32),
        grid_height=grid_height,
        grid_width=grid_width,
    )
