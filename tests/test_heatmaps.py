"""Attention heatmaps: weights land on their patches, per-group maps are read, and the `heatmaps`
stage draws a predict stage's attention over the real slide the tile stage tiled."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from histo.errors import HistoError
from histo.interfaces import StageContext
from histo.plugins.evaluation.plots import read_png_metadata
from histo.plugins.report.heatmap import ALPHA, file_name, read_weight_maps, render_heatmap, weight_image

GREY = 200


def colour(value: float, vmin: float, vmax: float, colormap: str = "inferno") -> np.ndarray:
    from matplotlib import colormaps

    return np.asarray(colormaps[colormap]((value - vmin) / (vmax - vmin))[:3]) * 255


def blend(over: np.ndarray, under: np.ndarray) -> np.ndarray:
    return ALPHA * over + (1 - ALPHA) * np.asarray(under, dtype=float)


def pixels(path: Path) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    box = read_png_metadata(path)["image_box"]
    return np.asarray(Image.open(path).convert("RGB")).astype(float), tuple(box)


def test_weight_image_paints_each_patch_and_averages_overlaps() -> None:
    coords = np.array([[0, 0], [400, 0], [200, 200]])
    heat = weight_image((40, 60), 20.0, coords, 400, np.array([1.0, 3.0, 5.0]))
    assert heat.shape == (40, 60)
    assert heat[5, 5] == 1.0  # only patch 0
    assert heat[5, 35] == 3.0  # only patch 1
    assert heat[15, 15] == pytest.approx(3.0)  # patches 0 and 2 overlap: their mean
    assert heat[25, 25] == pytest.approx(5.0)
    assert np.isnan(heat[35, 55])  # no patch there
    # patches sticking out of the thumbnail are clipped, not an error
    edge = weight_image((10, 10), 10.0, np.array([[80, 80]]), 50, np.array([2.0]))
    assert edge[9, 9] == 2.0 and np.isnan(edge[7, 7])


def test_a_weight_on_one_patch_shows_there_in_the_png(tmp_path: Path) -> None:
    thumbnail = np.full((120, 160, 3), GREY, np.uint8)
    coords = np.array([[x, y] for y in range(0, 1200, 300) for x in range(0, 1500, 300)])
    hot = 7  # the patch at level-0 (600, 300): thumbnail pixels x 60..90, y 30..60
    weights = np.full(len(coords), 0.1)
    weights[hot] = 0.9
    path = render_heatmap(thumbnail, 10.0, coords, 300, weights, tmp_path / "h.png", title="slide <x> · 20x")

    image, (x0, y0, x1, y1) = pixels(path)
    assert (x1 - x0, y1 - y0) == (160, 120)  # the thumbnail is drawn pixel for pixel
    assert image.shape[1] > x1 + 20  # room for the colour bar
    meta = read_png_metadata(path)
    assert (meta["vmin"], meta["vmax"], meta["patches"]) == (pytest.approx(0.1), pytest.approx(0.9), 20)

    top, bottom = blend(colour(0.9, 0.1, 0.9), [GREY] * 3), blend(colour(0.1, 0.1, 0.9), [GREY] * 3)
    inside = image[y0 + 35 : y0 + 55, x0 + 65 : x0 + 85].reshape(-1, 3)
    np.testing.assert_allclose(inside, np.broadcast_to(top, inside.shape), atol=3)
    elsewhere = image[y0 + 5 : y0 + 25, x0 + 5 : x0 + 55].reshape(-1, 3)  # patches 0 and 1
    np.testing.assert_allclose(elsewhere, np.broadcast_to(bottom, elsewhere.shape), atol=3)
    uncovered = image[y0 + 5 : y0 + 115, x0 + 152 : x0 + 158].reshape(-1, 3)  # right of the last column
    np.testing.assert_allclose(uncovered, GREY, atol=2)


def test_equal_and_missing_weights_render(tmp_path: Path) -> None:
    thumbnail = np.full((50, 50, 3), GREY, np.uint8)
    coords = np.array([[0, 0], [250, 250]])
    path = render_heatmap(thumbnail, 10.0, coords, 250, np.array([0.5, np.nan]), tmp_path / "h.png")
    image, (x0, y0, _, _) = pixels(path)
    middle = blend(colour(0.5, 0.0, 1.0), [GREY] * 3)  # one value: the middle of the map
    np.testing.assert_allclose(image[y0 + 10, x0 + 10], middle, atol=3)
    np.testing.assert_allclose(image[y0 + 40, x0 + 40], GREY, atol=2)  # NaN: left uncoloured
    with pytest.raises(ValueError, match="2 patch coordinates but 3 weights"):
        render_heatmap(thumbnail, 10.0, coords, 250, np.ones(3), tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_weight_maps_per_magnification_and_group(tmp_path: Path) -> None:
    path = tmp_path / "s.npz"
    np.savez(
        path,
        **{
            "20x_coords": np.zeros((4, 2), np.int64),
            "20x_attention": np.arange(4.0),
            "20x_subspace": np.ones((2, 4)),  # e.g. a teacher's per-gene-group attention
            "10x_coords": np.zeros((2, 2), np.int64),
            "10x_attention": np.ones(2),
            "10x_logits": np.ones(5),  # not one value per patch: not a map
        },
    )
    maps = {(m.magnification, m.name): m for m in read_weight_maps(path)}
    assert set(maps) == {
        ("10x", "attention"),
        ("20x", "attention"),
        ("20x", "subspace_0"),
        ("20x", "subspace_1"),
    }
    np.testing.assert_array_equal(maps[("20x", "attention")].weights, np.arange(4.0))
    assert file_name("a/b <c>", "20x", "subspace_0") == "a-b-c_20x_subspace_0.png"


# -- the stage on a real slide --------------------------------------------------------------------
CMU = "cmu-1-small-region"


def context(run: Path, stage_id: str, upstream: dict[str, Path]) -> StageContext:
    out = run / "stages" / stage_id
    out.mkdir(parents=True, exist_ok=True)
    return StageContext(
        stage_id=stage_id,
        run_dir=run,
        out_dir=out,
        seed=0,
        device="cpu",
        strict=False,
        log=logging.getLogger(f"histo.test.{stage_id}"),
        upstream=upstream,
        show_progress=False,
    )


@pytest.fixture(scope="module")
def tiled(slides_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from histo.plugins.stages.tile import TileConfig, TileStage

    run = tmp_path_factory.mktemp("tiled")
    config = TileConfig.model_validate(
        {"slides": str(slides_dir / f"{CMU}.svs"), "magnifications": ["20x"], "qc_thumbnails": False}
    )
    ctx = context(run, "tile", {})
    TileStage(config).run(ctx)
    return ctx.out_dir


def test_stage_draws_attention_on_the_slide_and_resumes(
    tiled: Path, slides_dir: Path, tmp_path: Path
) -> None:
    import openslide

    from histo.plugins.stages.heatmaps import HeatmapsConfig, HeatmapsStage
    from histo.plugins.tiling.coords_file import read_coords

    grid = read_coords(tiled / "coords" / "20x" / f"{CMU}.h5")
    hot = len(grid) // 2
    weights = np.zeros(len(grid))
    weights[hot] = 1.0
    predict = tmp_path / "run" / "stages" / "predict"
    (predict / "attention").mkdir(parents=True)
    np.savez(predict / "attention" / f"{CMU}.npz", **{"20x_coords": grid.coords, "20x_attention": weights})
    np.savez(
        predict / "attention" / "not-tiled.npz",
        **{"20x_coords": grid.coords[:2], "20x_attention": weights[:2]},
    )

    config = HeatmapsConfig.model_validate({"predictions": "predict", "tiles": "tile", "thumbnail_size": 400})
    ctx = context(tmp_path / "run", "heatmaps", {"predict": predict, "tile": tiled})
    HeatmapsStage(config).run(ctx)

    png = ctx.out_dir / "heatmaps" / f"{CMU}_20x_attention.png"
    assert ctx.artifacts["stages/heatmaps/heatmaps/" + png.name].startswith("attention heatmap: slide " + CMU)
    index = json.loads((ctx.out_dir / "heatmaps" / "index.json").read_text())
    assert index == [
        {
            "slide": CMU,
            "magnification": "20x",
            "name": "attention",
            "file": f"heatmaps/{png.name}",
            "patches": len(grid),
        }
    ]
    (failure,) = ctx.failures
    assert failure["item"] == "not-tiled" and "did not tile slide not-tiled" in failure["reason"]

    # the hot patch is drawn in the top colour over the slide's own pixels, the others in the bottom one
    meta = read_png_metadata(png)
    image, (x0, y0, x1, y1) = pixels(png)
    with openslide.OpenSlide(str(slides_dir / f"{CMU}.svs")) as slide:
        width, height = slide.dimensions
    downsample = meta["thumb_downsample"]
    assert (x1 - x0, y1 - y0) == (
        pytest.approx(width / downsample, abs=1),
        pytest.approx(height / downsample, abs=1),
    )
    size = grid.attrs["patch_size_level0"] / downsample
    assert meta["patch_size_level0"] == grid.attrs["patch_size_level0"]
    plain_png = tmp_path / "plain.png"  # the same figure with no patch: the thumbnail alone
    render_heatmap(
        np.asarray(_thumbnail(slides_dir, 400)), downsample, np.zeros((0, 2)), 1, np.zeros(0), plain_png
    )
    plain, _ = pixels(plain_png)

    def centre(row: int) -> tuple[int, int]:
        x, y = grid.coords[row]
        return int(y0 + y / downsample + size / 2), int(x0 + x / downsample + size / 2)

    cy, cx = centre(hot)
    np.testing.assert_allclose(image[cy, cx], blend(colour(1, 0, 1), plain[cy, cx]), atol=4)
    cold = 0 if hot != 0 else 1
    cy, cx = centre(cold)
    np.testing.assert_allclose(image[cy, cx], blend(colour(0, 0, 1), plain[cy, cx]), atol=4)

    # rerun in the same folder (an interrupted run resumed): finished heatmaps are kept as they are
    stamp = png.stat().st_mtime_ns
    HeatmapsStage(config).run(context(tmp_path / "run", "heatmaps", {"predict": predict, "tile": tiled}))
    assert png.stat().st_mtime_ns == stamp


def _thumbnail(slides_dir: Path, size: int) -> np.ndarray:
    from histo.plugins.readers import OpenSlideConfig
    from histo.plugins.readers.openslide_reader import OpenSlideReader
    from histo.plugins.tiling import qc

    with OpenSlideReader(OpenSlideConfig()).open(slides_dir / f"{CMU}.svs") as slide:
        return qc.thumbnail(slide, size)[0]


def test_stage_needs_a_predict_stage(tiled: Path, tmp_path: Path) -> None:
    from histo.plugins.stages.heatmaps import HeatmapsConfig, HeatmapsStage

    config = HeatmapsConfig.model_validate({"predictions": "train", "tiles": "tile"})
    ctx = context(tmp_path / "run", "heatmaps", {"train": tmp_path / "train", "tile": tiled})
    with pytest.raises(HistoError, match="must name a predict stage"):
        HeatmapsStage(config).run(ctx)
