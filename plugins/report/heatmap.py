"""Attention heatmaps: per-patch weights painted over a slide thumbnail, with a colour bar.

Any weight vector over a bag's patches renders (a slide encoder's attention, one per gene group of
a teacher's subspaces, ...): `render_heatmap` only needs the patches' level-0 coordinates and size.
The thumbnail is drawn pixel for pixel (the figure is sized around it), so the overlay lies exactly
where the patches are, and the PNG records where the thumbnail sits in its `histo` text chunk
(read it with histo.plugins.evaluation.plots.read_png_metadata).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from histo.io import atomic_path

DPI = 100
ALPHA = 0.55  # overlay opacity: the tissue stays visible under it
COLORMAP = "inferno"
# margins around the thumbnail, in pixels
TOP, BOTTOM, LEFT, COLOURBAR_GAP, COLOURBAR_WIDTH, RIGHT = 34, 10, 10, 14, 16, 64
MIN_WIDTH = 360  # room for the title on a small thumbnail
METADATA_KEY = "histo"


def weight_image(
    shape: tuple[int, int],
    downsample: float,
    coords_level0: np.ndarray,
    patch_size_level0: float,
    weights: np.ndarray,
) -> np.ndarray:
    """[H, W] float image of the patch weights at thumbnail scale: NaN where no patch lies, the mean
    weight where patches overlap. Vectorised (summed-area accumulation), whatever the bag size."""
    height, width = shape
    coords = np.asarray(coords_level0, dtype=np.float64).reshape(-1, 2)
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    if len(coords) != len(weights):
        raise ValueError(f"{len(coords)} patch coordinates but {len(weights)} weights")
    keep = np.isfinite(weights)
    coords, weights = coords[keep], weights[keep]
    x0 = np.clip(np.floor(coords[:, 0] / downsample), 0, width).astype(np.int64)
    y0 = np.clip(np.floor(coords[:, 1] / downsample), 0, height).astype(np.int64)
    x1 = np.clip(np.ceil((coords[:, 0] + patch_size_level0) / downsample), 0, width).astype(np.int64)
    y1 = np.clip(np.ceil((coords[:, 1] + patch_size_level0) / downsample), 0, height).astype(np.int64)
    x1, y1 = np.maximum(x1, np.minimum(x0 + 1, width)), np.maximum(y1, np.minimum(y0 + 1, height))
    total = np.zeros((height + 1, width + 1))
    count = np.zeros((height + 1, width + 1))
    for grid, value in ((total, weights), (count, np.ones_like(weights))):
        np.add.at(grid, (y0, x0), value)
        np.add.at(grid, (y0, x1), -value)
        np.add.at(grid, (y1, x0), -value)
        np.add.at(grid, (y1, x1), value)
    total = total.cumsum(0).cumsum(1)[:height, :width]
    count = np.rint(count.cumsum(0).cumsum(1)[:height, :width])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def render_heatmap(
    thumbnail_rgb: np.ndarray,
    thumb_downsample: float,
    coords_level0: np.ndarray,
    patch_size_level0: float,
    weights: np.ndarray,
    path: Path | str,
    title: str = "",
    *,
    colormap: str = COLORMAP,
) -> Path:
    """Write a PNG of `weights` (one per patch) over the thumbnail and return its path.

    `thumbnail_rgb` [H, W, 3] uint8 shows the slide at `thumb_downsample` level-0 pixels per pixel;
    `coords_level0` [N, 2] are the patches' top-left (x, y) at level 0, each `patch_size_level0` wide.
    Colours span the weights' own range (min to max, shown on the colour bar): attention is relative
    within a slide. Patches without a finite weight are left uncoloured.
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    image = np.asarray(thumbnail_rgb)
    if image.ndim != 3 or image.shape[2] < 3:
        raise ValueError(f"thumbnail must be [H, W, 3] RGB, got shape {image.shape}")
    image = image[..., :3]
    height, width = image.shape[:2]
    heat = weight_image((height, width), thumb_downsample, coords_level0, patch_size_level0, weights)
    finite = np.asarray(weights, dtype=np.float64)[np.isfinite(np.asarray(weights, dtype=np.float64))]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if not high > low:  # equal weights: one colour, the middle of the map
        low, high = low - 0.5, high + 0.5
    norm = Normalize(vmin=low, vmax=high)
    cmap = colormaps[colormap].with_extremes(bad=(0, 0, 0, 0))

    fig_w = max(MIN_WIDTH, LEFT + width + COLOURBAR_GAP + COLOURBAR_WIDTH + RIGHT)
    fig_h = TOP + max(height, 120) + BOTTOM
    figure = Figure(figsize=(fig_w / DPI, fig_h / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    box = (LEFT, TOP, LEFT + width, TOP + height)  # the thumbnail in PNG pixels (x0, y0, x1, y1)
    axes = figure.add_axes((LEFT / fig_w, 1 - (TOP + height) / fig_h, width / fig_w, height / fig_h))
    axes.imshow(image, interpolation="nearest", extent=(0, width, height, 0))
    overlay = np.ma.masked_invalid(heat)
    axes.imshow(
        overlay, cmap=cmap, norm=norm, alpha=ALPHA, interpolation="nearest", extent=(0, width, height, 0)
    )
    axes.set_axis_off()
    bar_x = LEFT + width + COLOURBAR_GAP
    bar_h = max(height, 120)
    bar_axes = figure.add_axes(
        (bar_x / fig_w, 1 - (TOP + bar_h) / fig_h, COLOURBAR_WIDTH / fig_w, bar_h / fig_h)
    )
    figure.colorbar(ScalarMappable(norm=norm, cmap=colormaps[colormap]), cax=bar_axes)
    bar_axes.tick_params(labelsize=7)
    if title:
        figure.text(LEFT / fig_w, 1 - 8 / fig_h, title, ha="left", va="top", fontsize=9)
    summary = {
        "image_box": list(box),
        "thumb_downsample": float(thumb_downsample),
        "patch_size_level0": float(patch_size_level0),
        "patches": len(np.asarray(weights).reshape(-1)),
        "vmin": low,
        "vmax": high,
        "colormap": colormap,
        "alpha": ALPHA,
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI, metadata={METADATA_KEY: json.dumps(summary)})
    return path


@dataclass(frozen=True)
class WeightMap:
    """One weight vector of one slide at one magnification, with its patches' coordinates."""

    magnification: str
    name: str  # "attention", or e.g. "attention_tumour" / "attention_2" for per-group maps
    coords: np.ndarray  # [N, 2] level-0 top-left
    weights: np.ndarray  # [N]


def read_weight_maps(path: Path) -> list[WeightMap]:
    """Every weight vector in a predict stage's attention/<slide>.npz.

    The file holds `<mag>_coords` [N, 2] and, per magnification, any number of arrays named
    `<mag>_<name>`: shaped [N] (one map named <name>) or [G, N] (G maps named <name>_0 ...).
    Arrays whose last axis is not N are not patch weights and are skipped.
    """
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: np.asarray(data[key]) for key in data.files}
    mags = sorted((k[: -len("_coords")] for k in arrays if k.endswith("_coords")), key=len, reverse=True)
    maps = []
    for key in sorted(arrays):
        mag = next((m for m in mags if key.startswith(f"{m}_")), None)
        if mag is None or key == f"{mag}_coords":
            continue
        coords = arrays[f"{mag}_coords"].reshape(-1, 2)
        value, name = arrays[key], key[len(mag) + 1 :]
        if value.ndim == 1 and len(value) == len(coords):
            maps.append(WeightMap(mag, name, coords, value.astype(np.float64)))
        elif value.ndim == 2 and value.shape[1] == len(coords):
            maps += [
                WeightMap(mag, f"{name}_{g}", coords, row.astype(np.float64)) for g, row in enumerate(value)
            ]
    return maps


def file_name(slide_id: str, magnification: str, name: str) -> str:
    """`<slide>_<mag>_<name>.png`, with characters a file system may refuse replaced."""

    def clean(text: str) -> str:
        return re.sub(r"[^\w.\-]+", "-", text).strip("-") or "x"

    return f"{clean(slide_id)}_{clean(magnification)}_{clean(name)}.png"
