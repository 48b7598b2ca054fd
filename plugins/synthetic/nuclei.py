"""Nuclei as stamps: a bank of small pre-drawn nuclei, scattered onto the slide in vectorised passes.

A bank holds K templates of B x B pixels (haematoxylin concentration, uint8), each one nucleus at a
random position inside its box. A pass views the canvas as a grid of B x B blocks (at a random grid
offset), picks the blocks that receive a nucleus from a probability map, and writes
`max(canvas, template)` into all of them at once. Several passes with different offsets give any
density and let nuclei touch and overlap, with no per-pixel and no per-nucleus Python code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class NucleusShape:
    """Distributions of one cell type's nuclei, in micrometres (converted to pixels by the bank).

    Semi-axes are lognormal around `radius_um` with coefficient of variation `size_cv` (pleomorphism);
    `intensity` is the haematoxylin concentration in [0, 1] (hyperchromasia raises it);
    `vesicular` is the share of nuclei with a dark rim and pale centre, `nucleolus` the share with a
    dark nucleolus; `chromatin` the amplitude of the speckled chromatin texture.
    """

    radius_um: float
    size_cv: float
    aspect: tuple[float, float]  # minor/major axis ratio, uniform in this range
    intensity: float
    intensity_sd: float
    vesicular: float = 0.0
    nucleolus: float = 0.0
    chromatin: float = 0.15
    max_angle: float = math.pi  # orientations uniform in [-max_angle/2, max_angle/2]
    ceiling: float = 1.0  # no pixel darker than this (keeps cell types apart in colour)


@dataclass(frozen=True)
class Bank:
    """K templates [K, B, B] uint8; `block` is B in pixels."""

    templates: np.ndarray

    @property
    def block(self) -> int:
        return int(self.templates.shape[1])


def block_size(shape: NucleusShape, mpp: float) -> int:
    """The template box, a multiple of 4 pixels: half again as wide as the nuclei this shape draws up to
    2.5 sd above the mean size (larger ones are clipped to fit), so a nucleus can sit anywhere in a
    wide part of its box and dense passes do not show the block grid."""
    largest_px = 2.0 * shape.radius_um * math.exp(2.5 * shape.size_cv) / mpp
    return max(8, math.ceil((1.5 * largest_px + 4) / 4.0) * 4)


def make_bank(shape: NucleusShape, mpp: float, count: int, rng: np.random.Generator) -> Bank:
    """Draw `count` nuclei of one cell type into a template bank (all templates in one array op)."""
    size = block_size(shape, mpp)
    k = count
    major = shape.radius_um / mpp * np.exp(shape.size_cv * rng.standard_normal(k) - shape.size_cv**2 / 2)
    major = np.clip(major, 1.0, size / 3)
    minor = major * rng.uniform(*shape.aspect, size=k)
    angle = rng.uniform(-shape.max_angle / 2, shape.max_angle / 2, size=k)
    # centre: anywhere the nucleus still fits in the box
    room = np.maximum(size / 2 - major - 1, 0)
    cy = size / 2 + rng.uniform(-1, 1, size=k) * room
    cx = size / 2 + rng.uniform(-1, 1, size=k) * room
    intensity = np.clip(shape.intensity + shape.intensity_sd * rng.standard_normal(k), 0.05, 1.0)

    grid = np.arange(size, dtype=np.float32) + 0.5
    dy = grid[None, :, None] - cy[:, None, None].astype(np.float32)
    dx = grid[None, None, :] - cx[:, None, None].astype(np.float32)
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    u = (dx * cos + dy * sin) / major[:, None, None]
    v = (-dx * sin + dy * cos) / minor[:, None, None]
    r = np.sqrt(u * u + v * v)
    # anti-aliased edge about one pixel wide
    edge = np.clip((1.0 - r) * minor[:, None, None] + 0.5, 0.0, 1.0)
    rc = np.minimum(r, 1.0)
    vesicular = (rng.random(k) < shape.vesicular)[:, None, None]
    profile = np.where(vesicular, 0.45 + 0.55 * rc**4, 0.9 + 0.1 * rc)
    chromatin = 1.0 + shape.chromatin * rng.standard_normal((k, size, size), dtype=np.float32)
    value = intensity[:, None, None] * profile * chromatin
    # nucleolus: a small dark dot near the centre
    has_nucleolus = (rng.random(k) < shape.nucleolus)[:, None, None]
    ny = cy[:, None, None] + 0.3 * minor[:, None, None] * rng.uniform(-1, 1, (k, 1, 1))
    nx = cx[:, None, None] + 0.3 * major[:, None, None] * rng.uniform(-1, 1, (k, 1, 1))
    nucleolus_r = np.maximum(0.18 * minor, 0.9)[:, None, None]
    dot = ((grid[None, :, None] - ny) ** 2 + (grid[None, None, :] - nx) ** 2) < nucleolus_r**2
    value = np.where(has_nucleolus & dot, np.maximum(value, 0.95), value)
    value = np.minimum(value, shape.ceiling)
    templates = np.clip(np.rint(value * edge * 255.0), 0, 255).astype(np.uint8)
    return Bank(templates)


def scatter(
    canvas: np.ndarray,
    bank: Bank,
    density: np.ndarray,
    lowres_factor: float,
    expected_per_block_max: float,
    rng: np.random.Generator,
    max_per_pass: float = 0.6,
) -> int:
    """Stamp nuclei from `bank` into `canvas` (uint8, modified in place) with max-compositing.

    `density` is the expected number of nuclei per block, sampled on the low-resolution grid
    (one low-res pixel = `lowres_factor` canvas pixels). The canvas must carry a margin of one
    block on every side (the caller crops it), so every pass offset fits. Returns the count drawn.
    """
    b = bank.block
    height, width = canvas.shape
    passes = max(1, math.ceil(expected_per_block_max / max_per_pass))
    drawn = 0
    for _ in range(passes):
        oy, ox = (int(o) for o in rng.integers(0, b, size=2))
        ny, nx = (height - oy) // b, (width - ox) // b
        # a view (rows keep their stride, columns are contiguous), so writes land in the canvas
        blocks = canvas[oy : oy + ny * b, ox : ox + nx * b].reshape(ny, b, nx, b)
        # expected nuclei at each block centre, read from the low-res map (canvas margin = b)
        ys = np.floor((oy + (np.arange(ny) + 0.5) * b - b) / lowres_factor).astype(np.int64)
        xs = np.floor((ox + (np.arange(nx) + 0.5) * b - b) / lowres_factor).astype(np.int64)
        inside_y = (ys >= 0) & (ys < density.shape[0])
        inside_x = (xs >= 0) & (xs < density.shape[1])
        prob = density[np.clip(ys, 0, density.shape[0] - 1)][:, np.clip(xs, 0, density.shape[1] - 1)]
        prob = prob * inside_y[:, None] * inside_x[None, :] / passes
        yy, xx = np.nonzero(rng.random(prob.shape, dtype=np.float32) < prob)
        if len(yy) == 0:
            continue
        chosen = bank.templates[rng.integers(0, len(bank.templates), size=len(yy))]
        blocks[yy, :, xx, :] = np.maximum(blocks[yy, :, xx, :], chosen)
        drawn += len(yy)
    return drawn
