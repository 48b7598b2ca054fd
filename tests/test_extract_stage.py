"""The extraction engine and the `extract` stage, on real slides.

Most tests build the tile stage's output format themselves (coords files for a few patches of
cmu-1-small-region.svs), so they test extraction alone; one runs a real tile -> extract recipe, and
the slow ones kill a run mid-way and run it under torchrun.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import openslide
import pytest
import torch
from PIL import Image

from histo import ComponentSpec, hookimpl
from histo.errors import HistoError, SlideReadError
from histo.interfaces import FeatureExtractor, StageContext
from histo.manager import Plugins
from histo.plugins.extractors.coords import read_grid
from histo.plugins.extractors.engine import Engine, available_cores, default_threads
from histo.plugins.extractors.patches import PatchJob, SlideSource
from histo.plugins.features import find_bags, iter_shard, read_bag
from histo.plugins.readers import OpenSlideConfig
from histo.plugins.readers.openslide_reader import OpenSlideReader
from histo.plugins.stages.extract import ExtractConfig, ExtractStage

SLIDE = "cmu-1-small-region.svs"  # 2220 x 2967, 0.499 µm/px
PATCH = 224


def grid(n: int, step: int = PATCH) -> np.ndarray:
    """The first `n` patches of a row-major grid over the slide."""
    xs, ys = np.meshgrid(np.arange(0, 2220 - PATCH, step), np.arange(0, 2967 - PATCH, step))
    return np.stack([xs.ravel(), ys.ravel()], axis=1)[:n].astype(np.int64)


def write_coords(
    path: Path,
    slide_path: Path,
    coords: np.ndarray,
    *,
    slide_id: str,
    magnification: str = "20x",
    read_level: int = 0,
    read_size: int = PATCH,
    parent: np.ndarray | None = None,
    reader: str = "openslide",
) -> None:
    """A coords file in the tile stage's format (attributes on the file and on `coords`)."""
    try:
        with openslide.OpenSlide(str(slide_path)) as slide:
            width, height = slide.dimensions
    except (openslide.OpenSlideError, OSError):
        width, height = 0, 0
    attrs = {
        "slide_id": slide_id,
        "slide_path": str(slide_path),
        "reader": reader,
        "reader_params": "{}",
        "magnification": magnification,
        "target_mpp": 0.5 if magnification == "20x" else 1.0,
        "patch_size": PATCH,
        "patch_size_level0": read_size * (2**read_level if read_level else 1),
        "read_level": read_level,
        "read_size": read_size,
        "overlap": 0,
        "source_mpp": 0.499,
        "mpp_source": "metadata",
        "level0_width": width,
        "level0_height": height,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("coords", data=coords)
        if parent is not None:
            f.create_dataset("parent", data=parent)
        for node in (f, f["coords"]):
            node.attrs.update(attrs)


def tile_folder(root: Path, slides: dict[str, tuple[Path, dict[str, np.ndarray]]]) -> Path:
    """slides.csv, tiling.json and coords/<mag>/<slide>.h5 for {slide_id: (path, {mag: coords})}."""
    mags = sorted({mag for _, grids in slides.values() for mag in grids})
    root.mkdir(parents=True, exist_ok=True)
    with (root / "slides.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["slide_id", "path", "status", "mpp", "mpp_source", "error"])
        for slide_id, (path, _) in slides.items():
            writer.writerow([slide_id, path, "ok", 0.499, "metadata", ""])
        writer.writerow(["never-tiled", "/nowhere.svs", "failed", "", "", "cannot open"])
    tiling = {"reader": {"name": "openslide", "params": {}}, "magnifications": [{"name": m} for m in mags]}
    (root / "tiling.json").write_text(json.dumps(tiling))
    for slide_id, (path, grids) in slides.items():
        for mag, coords in grids.items():
            write_coords(
                root / "coords" / mag / f"{slide_id}.h5", path, coords, slide_id=slide_id, magnification=mag
            )
    return root


def run_extract(tmp_path: Path, tiles: Path, **params: Any) -> StageContext:
    """Run the stage as the runner would (same out_dir across calls: a resumed run)."""
    out = tmp_path / "run" / "stages" / "extract"
    out.mkdir(parents=True, exist_ok=True)
    ctx = StageContext(
        stage_id="extract",
        run_dir=tmp_path / "run",
        out_dir=out,
        seed=0,
        device="cpu",
        strict=False,
        log=logging.getLogger("histo.test.extract"),
        upstream={"tile": tiles},
        show_progress=False,
    )
    config = ExtractConfig.model_validate({"tiles": "tile", "extractor": "handcrafted", **params})
    ExtractStage(config).run(ctx)
    return ctx


def manifest(ctx: StageContext) -> dict[tuple[str, str], dict[str, str]]:
    with (ctx.out_dir / "manifest.csv").open(newline="") as fh:
        return {(r["slide_id"], r["magnification"]): r for r in csv.DictReader(fh)}


@pytest.fixture
def slide(slides_dir: Path) -> Path:
    return slides_dir / SLIDE


# -- the engine --------------------------------------------------------------------------------------


def test_engine_embeds_the_pixels_at_the_coordinates(
    slide: Path, tmp_path: Path, histo_plugins: Plugins
) -> None:
    coords = grid(10, step=300)
    write_coords(tmp_path / "c.h5", slide, coords, slide_id="s")
    job = PatchJob(
        SlideSource(slide, OpenSlideReader(OpenSlideConfig())), read_grid(tmp_path / "c.h5", "20x")
    )
    extractor = histo_plugins.registry("feature_extractors").build("handcrafted", {"input_size": 64})
    model = extractor.build()

    with openslide.OpenSlide(str(slide)) as handle:
        patches = [
            np.asarray(
                handle.read_region((int(x), int(y)), 0, (PATCH, PATCH))
                .convert("RGB")
                .resize((64, 64), Image.Resampling.BILINEAR)
            )
            for x, y in coords
        ]
    x = torch.from_numpy(np.stack(patches)).permute(0, 3, 1, 2).float() / 255
    with torch.inference_mode():
        expected = model(x).numpy()

    in_workers = Engine(extractor, model, batch_size=4, num_workers=1).bags([job, job])
    in_process = Engine(extractor, model, batch_size=3, num_workers=0).bags([job])
    assert len(in_workers) == 2 and all(bag.valid.all() for bag in in_workers)
    np.testing.assert_allclose(in_workers[0].features, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(in_workers[0].features, in_workers[1].features)
    np.testing.assert_allclose(in_process[0].features, expected, rtol=1e-5, atol=1e-6)


def test_engine_autocast_path(slide: Path, tmp_path: Path, histo_plugins: Plugins) -> None:
    """precision bf16 (the CUDA default) runs the model under autocast; features come back float32."""
    write_coords(tmp_path / "c.h5", slide, grid(4, step=500), slide_id="s")
    job = PatchJob(
        SlideSource(slide, OpenSlideReader(OpenSlideConfig())), read_grid(tmp_path / "c.h5", "20x")
    )
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 8, 8), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )
    path = tmp_path / "m.pt2"
    batch = torch.export.Dim("batch", min=1, max=64)
    torch.export.save(
        torch.export.export(model, (torch.rand(2, 3, 64, 64),), dynamic_shapes=({0: batch},)), path
    )
    extractor = histo_plugins.registry("feature_extractors").build(
        "local_model", {"path": path, "input_size": 64}
    )
    built = extractor.build()
    full = Engine(extractor, built, precision="fp32", num_workers=0).bags([job])[0].features
    half = Engine(extractor, built, precision="bf16", num_workers=0).bags([job])[0].features
    assert half.dtype == np.float32 and not np.array_equal(full, half), "bf16 rounding shows"
    np.testing.assert_allclose(half, full, rtol=0.05, atol=0.02)


class TinyConv(FeatureExtractor):
    input_size = 32
    output_dim = 8

    def build(self) -> torch.nn.Module:
        torch.manual_seed(0)
        conv = torch.nn.Conv2d(3, self.output_dim, 4, 4)
        return torch.nn.Sequential(conv, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())


def test_engine_layout_threads_and_normalisation(
    slide: Path, tmp_path: Path, histo_plugins: Plugins, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Channels-last where the model convolves; the model gets the cores the readers leave (unless
    OMP_NUM_THREADS says otherwise), for the extraction only; inputs are (x / 255 - mean) / std."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    cores = available_cores()
    assert default_threads(0) == cores and default_threads(cores + 3) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert default_threads(0) is None, "the user's or torchrun's choice is kept"
    monkeypatch.delenv("OMP_NUM_THREADS")

    images = torch.randint(
        0, 256, (3, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    handcrafted = histo_plugins.registry("feature_extractors").build("handcrafted", {"input_size": 32})
    conv = TinyConv()
    for extractor, layout in ((conv, True), (handcrafted, False)):
        engine = Engine(extractor, extractor.build(), num_workers=0, threads=1)
        assert engine.channels_last is layout and engine.threads == 1
        x = engine.prepare(images)
        assert x.is_contiguous(memory_format=torch.channels_last if layout else torch.contiguous_format)
        reference = images.permute(0, 3, 1, 2).float() / 255
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (extractor.mean, extractor.std))
        assert torch.equal(x, (reference - mean) / std), "the same floats as the plain normalisation"

    write_coords(tmp_path / "c.h5", slide, grid(6, step=300), slide_id="s")
    job = PatchJob(SlideSource(slide, OpenSlideReader()), read_grid(tmp_path / "c.h5", "20x"))
    before = torch.get_num_threads()
    target = 1 if before > 1 else 2
    seen = []
    engine = Engine(conv, conv.build(), batch_size=2, num_workers=0, threads=target)
    for batch in engine.batches([job]):
        seen.append(torch.get_num_threads())
        assert batch.valid.all()
    assert seen == [target] * 3 and torch.get_num_threads() == before, "restored after extraction"
    plain = Engine(conv, conv.build(), batch_size=2, num_workers=0, channels_last=False, threads=target)
    np.testing.assert_allclose(
        plain.bags([job])[0].features, engine.bags([job])[0].features, rtol=1e-5, atol=1e-6
    )


class FlakyReader(OpenSlideReader):
    """OpenSlide, except that regions starting at x == 448 fail, as on a slide with a corrupt tile."""

    def open(self, path: Path, mpp_override: float | None = None) -> Any:
        slide = super().open(path, mpp_override)
        read = slide.read_region

        def flaky(location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
            if location[0] == 448:
                raise SlideReadError(f"slide {slide.slide_id}: corrupt tile at {location}")
            return read(location, level, size)

        slide.read_region = flaky  # type: ignore[method-assign]
        return slide


class FlakyPlugin:
    @hookimpl
    def histo_slide_readers(self) -> Iterable[ComponentSpec[Any]]:
        return [ComponentSpec("flaky", lambda config: FlakyReader(), OpenSlideConfig, "test reader")]


# -- the stage ---------------------------------------------------------------------------------------


def test_unreadable_patches_are_missing_never_white(
    slide: Path, tmp_path: Path, register_plugin: Any, caplog: pytest.LogCaptureFixture
) -> None:
    register_plugin(FlakyPlugin(), "flaky")
    coords = grid(8)  # x = 0, 224, 448, ...: the third patch of the row fails
    tiles = tile_folder(tmp_path / "tile", {"s": (slide, {"20x": coords})})
    write_coords(tiles / "coords" / "20x" / "s.h5", slide, coords, slide_id="s", reader="flaky")
    ctx = run_extract(tmp_path, tiles, extractor={"name": "handcrafted", "params": {"input_size": 64}})

    bad = coords[:, 0] == 448
    bag = read_bag(ctx.out_dir / "features" / "20x" / "s.h5", drop_missing=False)
    np.testing.assert_array_equal(read_bag(bag.path).rows, np.flatnonzero(~bad))
    assert np.isnan(bag.features[bad]).all() and np.isfinite(bag.features[~bad]).all()
    with h5py.File(bag.path) as f:
        np.testing.assert_array_equal(f["valid"][()], ~bad)
    assert manifest(ctx)[("s", "20x")]["n_missing"] == "1"
    assert "1 of 8 patches could not be read" in caplog.text and "corrupt tile at (448, 0)" in caplog.text

    plain_tiles = tile_folder(tmp_path / "tile2", {"s": (slide, {"20x": coords})})
    reference = run_extract(
        tmp_path / "plain", plain_tiles, extractor={"name": "handcrafted", "params": {"input_size": 64}}
    )
    plain = read_bag(reference.out_dir / "features" / "20x" / "s.h5")
    # the same patches give the same features: a missing row shifts nothing
    np.testing.assert_allclose(read_bag(bag.path).features, plain.features[~bad], rtol=1e-6)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_bad_slides_fail_alone_with_reasons(slide: Path, slides_dir: Path, tmp_path: Path) -> None:
    coords = grid(4)
    tiles = tile_folder(
        tmp_path,
        {
            "good": (slide, {"20x": coords, "10x": coords[:2]}),
            "unreadable": (slides_dir / "openslide-fixtures" / "unreadable.svs", {"20x": np.array([[0, 0]])}),
            "truncated": (slides_dir / "broken" / "broken.svs", {"20x": coords}),
            "half": (slide, {"20x": coords}),  # no 10x coords file
            "empty": (slide, {"20x": coords[:0], "10x": coords[:0]}),  # no tissue: empty bags
        },
    )
    ctx = run_extract(tmp_path, tiles)
    rows = manifest(ctx)
    ok = {("good", "20x"), ("good", "10x"), ("half", "20x"), ("empty", "20x"), ("empty", "10x")}
    assert {k for k, r in rows.items() if r["status"] == "ok"} == ok
    assert read_bag(ctx.out_dir / "features" / "10x" / "empty.h5").features.shape == (0, 70)
    assert "none of its 1 patches could be read" in rows[("unreadable", "20x")]["error"]
    assert (
        "cannot open" in rows[("truncated", "20x")]["error"]
        and "broken.svs" in rows[("truncated", "20x")]["error"]
    )
    assert "no coords file" in rows[("half", "10x")]["error"]
    assert not (ctx.out_dir / "features" / "20x" / "unreadable.h5").exists()
    failures = [json.loads(line) for line in (ctx.out_dir / "failures.jsonl").read_text().splitlines()]
    assert {f["item"] for f in failures} == {"unreadable", "truncated", "half"}
    assert ctx.metrics["slides"] == 2 and ctx.metrics["bags_failed"] == 5 and ctx.metrics["patches"] == 10


def test_bag_files_carry_the_coords_and_the_extractor(slide: Path, tmp_path: Path) -> None:
    coords = grid(6)
    tiles = tile_folder(tmp_path, {"s": (slide, {"20x": coords})})
    parent = np.array([0, 0, 1, 1, 2, 2])
    write_coords(tiles / "coords" / "20x" / "s.h5", slide, coords, slide_id="s", parent=parent)
    ctx = run_extract(
        tmp_path,
        tiles,
        extractor={"name": "handcrafted", "params": {"input_size": 32}},
        feature_dtype="float16",
    )
    bag = read_bag(ctx.out_dir / "features" / "20x" / "s.h5")
    assert bag.layout == "histo" and bag.features.dtype == np.float16 and bag.features.shape == (6, 70)
    np.testing.assert_array_equal(bag.coords, coords)
    np.testing.assert_array_equal(bag.parent, parent)
    coords_attrs = read_grid(tiles / "coords" / "20x" / "s.h5", "20x").attrs
    assert {k: bag.attrs[k] for k in coords_attrs} == coords_attrs
    assert bag.attrs["extractor"] == "handcrafted" and bag.attrs["feature_dim"] == 70
    assert json.loads(bag.attrs["extractor_config"])["params"] == {"input_size": 32}
    assert len(bag.attrs["extractor_hash"]) == 16 and bag.attrs["histo_version"]
    summary = json.loads((ctx.out_dir / "extraction.json").read_text())
    assert summary["extractor_hash"] == bag.attrs["extractor_hash"] and summary["mean"] == [0.0, 0.0, 0.0]
    assert (summary["device"], summary["precision"], summary["precision_used"]) == ("cpu", "auto", "fp32")
    assert find_bags(ctx.out_dir) == {"s": bag.path}


def test_model_batch_slices_the_forward_passes_and_changes_no_feature(
    slide: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`model_batch` (the recipe's knob for the forward-pass size) reaches the engine; bags are the same."""
    tiles = tile_folder(tmp_path / "tiles", {"s": (slide, {"20x": grid(7)})})
    extractor = {"name": "handcrafted", "params": {"input_size": 32}}
    with caplog.at_level(logging.INFO, logger="histo.test.extract"):
        sliced = run_extract(tmp_path / "sliced", tiles, extractor=extractor, batch_size=4, model_batch=3)
    assert "batch 4 (forward passes of 3)" in caplog.text
    whole = run_extract(tmp_path / "whole", tiles, extractor=extractor, batch_size=4)
    a, b = (read_bag(ctx.out_dir / "features" / "20x" / "s.h5") for ctx in (sliced, whole))
    assert a.features.shape == (7, 70) and np.isfinite(a.features).all()
    np.testing.assert_array_equal(a.features, b.features)
    with pytest.raises(ValueError, match="model_batch"):
        ExtractConfig.model_validate({"tiles": "tile", "model_batch": 0})


def test_resume_keeps_finished_bags(slide: Path, tmp_path: Path) -> None:
    tiles = tile_folder(
        tmp_path, {sid: (slide, {"20x": grid(3, step=300 + 50 * i)}) for i, sid in enumerate("abc")}
    )
    params = {"extractor": {"name": "handcrafted", "params": {"input_size": 32}}}
    ctx = run_extract(tmp_path, tiles, **params)
    features = ctx.out_dir / "features" / "20x"
    mtimes = {p.name: p.stat().st_mtime_ns for p in features.glob("*.h5")}
    assert sorted(mtimes) == ["a.h5", "b.h5", "c.h5"]
    (features / "b.h5").unlink()
    (features / ".c.h5.x1y2.partial").write_bytes(b"left by a killed run")

    again = run_extract(tmp_path, tiles, **params)
    assert again.metrics["bags_written"] == 1 and again.metrics["bags_resumed"] == 2
    assert {p.name for p in features.iterdir()} == {"a.h5", "b.h5", "c.h5"}
    assert (features / "a.h5").stat().st_mtime_ns == mtimes["a.h5"]
    assert (features / "c.h5").stat().st_mtime_ns == mtimes["c.h5"]

    # another extractor config never trusts these files
    other = run_extract(tmp_path, tiles, extractor={"name": "handcrafted", "params": {"input_size": 48}})
    assert other.metrics["bags_written"] == 3


def test_shards_of_the_stage(slide: Path, tmp_path: Path) -> None:
    tiles = tile_folder(
        tmp_path, {sid: (slide, {"20x": grid(2 + i, step=400)}) for i, sid in enumerate(["a.1", "b", "c"])}
    )
    ctx = run_extract(
        tmp_path,
        tiles,
        extractor={"name": "handcrafted", "params": {"input_size": 32}},
        shards=True,
        shard_max_slides=2,
    )
    folder = ctx.out_dir / "shards" / "20x"
    index = json.loads((folder / "index.json").read_text())
    assert [[s["slide_id"] for s in shard["samples"]] for shard in index["shards"]] == [["a.1", "b"], ["c"]]
    for shard in index["shards"]:
        for meta, features, coords in iter_shard(folder / shard["shard"]):
            bag = read_bag(ctx.out_dir / "features" / "20x" / f"{meta['slide_id']}.h5")
            np.testing.assert_array_equal(features, bag.features)
            np.testing.assert_array_equal(coords, bag.coords)
    assert "stages/extract/shards/20x" in ctx.artifacts


def test_config_errors_name_what_to_fix(slide: Path, tmp_path: Path) -> None:
    tiles = tile_folder(tmp_path, {"s": (slide, {"20x": grid(1)})})
    with pytest.raises(HistoError, match=r"magnifications 40x were not tiled .* it has: 20x"):
        run_extract(tmp_path, tiles, magnifications=["40x"])
    with pytest.raises(HistoError, match=r"slides\.csv is missing"):
        run_extract(tmp_path, tmp_path / "empty")


def test_tile_then_extract_recipe(slide: Path, tmp_path: Path, load_recipe_text: Any) -> None:
    from histo.run import run_recipe

    loaded = load_recipe_text(
        f"""
name: tile-extract
stages:
  tile:
    stage: tile
    params: {{slides: {slide}, magnifications: [10x, 20x], patch_size: {PATCH}, qc_thumbnails: false}}
  extract:
    stage: extract
    params: {{tiles: tile, extractor: {{name: handcrafted, params: {{input_size: 32}}}}, batch_size: 16}}
"""
    )
    result = run_recipe(loaded, tmp_path / "run", quiet=True)
    assert result.ok, result.summary
    extract = tmp_path / "run" / "stages" / "extract"
    tile = tmp_path / "run" / "stages" / "tile"
    for mag in ("10x", "20x"):
        bag = read_bag(extract / "features" / mag / "cmu-1-small-region.h5")
        coords = read_grid(tile / "coords" / mag / "cmu-1-small-region.h5", mag)
        np.testing.assert_array_equal(bag.coords, coords.coords)
        assert bag.attrs["read_size"] == coords.read_size and np.isfinite(bag.features).all()
    fine = read_bag(extract / "features" / "20x" / "cmu-1-small-region.h5")
    np.testing.assert_array_equal(
        fine.parent, read_grid(tile / "coords" / "20x" / "cmu-1-small-region.h5", "20x").parent
    )
    metrics = result.summary["stages"][1]["metrics"]
    assert metrics["slides"] == 1 and metrics["patches"] == len(fine) + len(
        read_bag(extract / "features" / "10x" / "cmu-1-small-region.h5")
    )
    assert metrics["patches_per_s"] > 0


# -- killed runs and torchrun ------------------------------------------------------------------------


def _recipe(tmp_path: Path, slide: Path, n_slides: int, **extract: Any) -> Path:
    """A tile -> extract recipe over `n_slides` links to the same real slide."""
    slides = _mkdir(tmp_path / "slides")
    for i in range(n_slides):
        link = slides / f"slide-{i:02d}.svs"
        if not link.exists():
            link.symlink_to(slide)
    handcrafted = {"name": "handcrafted", "params": {"input_size": 64}}  # small: the tests are about files
    params = {"tiles": "tile", "extractor": handcrafted, **extract}
    text = f"""
name: many
stages:
  tile:
    stage: tile
    params: {{slides: {slides}, magnifications: [10x, 20x], patch_size: {PATCH}, qc_thumbnails: false}}
  extract:
    stage: extract
    params: {json.dumps(params)}
"""
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def _histo(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "histo", *args], capture_output=True, text=True, timeout=240, **kwargs
    )


@pytest.mark.slow
def test_killed_run_resumes_with_only_the_missing_bags(slide: Path, tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, slide, 4, batch_size=4, num_workers=0)
    out = tmp_path / "run"
    features = out / "stages" / "extract" / "features"
    proc = subprocess.Popen(
        [sys.executable, "-m", "histo", "run", str(recipe), "--out", str(out), "--quiet"],
        start_new_session=True,  # its own process group: the kill takes any reader workers too
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180
    while not list(features.glob("*/*.h5")):
        assert proc.poll() is None, "the run ended before any feature file appeared"
        assert time.monotonic() < deadline, "no feature file after 180 s"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    survivors = {p: p.stat().st_mtime_ns for p in features.glob("*/*.h5")}
    assert 0 < len(survivors) < 8, "the kill landed mid-extraction"
    for path in survivors:  # whatever carries a final name is whole
        with h5py.File(path) as f:
            assert f["valid"].shape == (f.attrs["n_patches"],) and "n_missing" in f.attrs

    result = _histo("run", str(recipe), "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stdout + result.stderr
    bags = sorted(features.glob("*/*.h5"))
    assert len(bags) == 8 and not list(features.glob("*/.*"))
    assert {p: p.stat().st_mtime_ns for p in survivors} == survivors, "finished bags were not rewritten"
    summary = json.loads((out / "summary.json").read_text())
    extract = summary["stages"][1]
    assert extract["status"] == "done" and extract["metrics"]["bags_resumed"] == len(survivors)
    assert extract["metrics"]["bags_written"] == 8 - len(survivors)


@pytest.mark.slow
def test_torchrun_two_processes_match_one(slide: Path, tmp_path: Path) -> None:
    """Slides are split by rank; each bag must equal the single-process one, and rank 0 writes the rest."""
    recipe = _recipe(tmp_path, slide, 3, batch_size=8, num_workers=0, shards=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # torchrun's default, so both runs compute alike
    single = _histo("run", str(recipe), "--out", str(tmp_path / "one"), "--quiet", env=env)
    assert single.returncode == 0, single.stdout + single.stderr
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "histo",
    ]
    spread = subprocess.run(
        [*launcher, "run", str(recipe), "--out", str(tmp_path / "two"), "--quiet"],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert spread.returncode == 0, spread.stdout + spread.stderr

    one, two = (tmp_path / name / "stages" / "extract" for name in ("one", "two"))
    names = sorted(p.relative_to(one) for p in one.glob("features/*/*.h5"))
    assert len(names) == 6 and names == sorted(p.relative_to(two) for p in two.glob("features/*/*.h5"))
    for name in names:
        a, b = read_bag(one / name, drop_missing=False), read_bag(two / name, drop_missing=False)
        np.testing.assert_array_equal(a.features, b.features)
        np.testing.assert_array_equal(a.coords, b.coords)
        assert a.attrs == b.attrs
        assert (one / name).read_bytes() == (two / name).read_bytes(), "the very same file"
    assert (one / "manifest.csv").read_text() == (two / "manifest.csv").read_text()
    for shard in sorted(one.glob("shards/*/*")):
        assert shard.read_bytes() == (two / shard.relative_to(one)).read_bytes()
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert (
        summary["stages"][1]["metrics"]["bags_written"] == 6
        and summary["stages"][1]["metrics"]["world_size"] == 2
    )
