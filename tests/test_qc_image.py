"""The QC image: a palette PNG whose overlays keep their exact colours and whose thumbnail stays close
to the slide's pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from histo.interfaces import TissueMask
from histo.plugins.tiling import Magnification, plan_grids, qc, tile


def test_erosion_and_dilation_match_scipy() -> None:
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (2, 5), (37, 53)]:
        region = rng.random(shape) < 0.6
        np.testing.assert_array_equal(qc.erode(region), ndimage.binary_erosion(region, border_value=0))
        np.testing.assert_array_equal(qc.dilate(region), ndimage.binary_dilation(region))


def test_render_keeps_overlay_colours_exact_and_the_thumbnail_close(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    height, width = 300, 400
    # a smooth pink-purple "slide" with noise, so quantisation has many colours to choose from
    yy, xx = np.mgrid[0:height, 0:width]
    red, green = 200 + 40 * np.sin(xx / 30), 120 + 60 * np.cos(yy / 25)
    blue = 180 + 30 * np.sin((xx + yy) / 40)
    base = np.stack([red, green, blue], -1)
    thumbnail = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    downsample = 16.0  # level-0 pixels per thumbnail pixel; the slide is 6,400 x 4,800 at 0.5 µm/px
    mask = np.zeros((height // 2, width // 2), bool)  # at 32 level-0 pixels per mask pixel
    mask[20:120, 30:170] = True
    tissue = TissueMask(mask, 32.0)
    mags = [Magnification.model_validate("10x"), Magnification.model_validate("20x")]
    grids = tile(tissue, plan_grids((1.0,), 0.5, mags, 256), 0.5, (6400, 4800))
    assert all(len(g) for g in grids)

    image = qc.render(thumbnail, downsample, tissue, grids)
    qc.save(image, tmp_path / "qc.png")
    with Image.open(tmp_path / "qc.png") as written:
        assert written.mode == "P" and written.size == (width, height + qc.LEGEND_HEIGHT)
        rgb = np.asarray(written.convert("RGB")).astype(int)
    picture = rgb[:height]
    for index, grid in enumerate(grids):
        lines = qc.grid_lines((height, width), downsample, grid)
        shown = (picture == qc.COLOURS[index]).all(-1)
        assert lines.any() and shown.any()
        # every pixel in that colour is one of its grid's lines (finer lines may be drawn over)
        assert not (shown & ~lines).any()
    outline = (picture == qc.TISSUE_COLOUR).all(-1)
    assert outline[40:240:, 60].any() and not outline[150, 200]  # the tissue's left border, not its inside
    untouched = ~outline & ~np.any([(picture == c).all(-1) for c in qc.COLOURS], axis=0)
    error = np.abs(picture[untouched] - thumbnail[untouched].astype(int))
    assert error.mean() < 6 and error.max() < 48, "the quantised thumbnail stays close to the slide"


def test_the_tile_stages_warm_up_imports_what_the_first_outputs_need() -> None:
    import sys

    from histo.plugins.tiling.warm import warm_up

    thread = warm_up()
    thread.join(timeout=60)
    assert not thread.is_alive() and "h5py" in sys.modules and "PIL.PngImagePlugin" in sys.modules
