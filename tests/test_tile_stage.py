"""The `tile` stage on real slides (symlinked into tmp_path): outputs, failures, overrides, resume."""

from __future__ import annotations

import csv
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import yaml
from PIL import Image

from histo import ComponentSpec, EmptyConfig, hookimpl
from histo.cli import main
from histo.errors import HistoError, RecipeError
from histo.interfaces import Stage, StageContext
from histo.io import read_json
from histo.manager import Plugins
from histo.plugins.stages.tile import TileConfig, TileStage
from histo.plugins.tiling.coords_file import read_coords
from histo.run import RunResult, run_recipe

CMU = "cmu-1-small-region"
TCGA = "tcga-cr-7395-01a-01-ts1"
BAD = ["openslide-fixtures/unreadable.svs", "openslide-fixtures/unopenable.tiff", "broken/broken.svs"]


def link(slides_dir: Path, folder: Path, names: Iterable[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / Path(name).name).symlink_to(slides_dir / name)
    return folder


RunTile = Callable[..., RunResult]


@pytest.fixture
def run_tile(histo_plugins: Plugins, load_recipe_text: Callable[..., Any], tmp_path: Path) -> RunTile:
    def run(params: dict[str, Any], out: str = "run") -> RunResult:
        text = yaml.safe_dump({"name": "t", "stages": {"tile": {"stage": "tile", "params": params}}})
        return run_recipe(load_recipe_text(text), tmp_path / out, plugins=histo_plugins, quiet=True)

    return run


def rows(result: RunResult) -> dict[str, dict[str, str]]:
    with (result.run_dir / "stages" / "tile" / "slides.csv").open(newline="") as fh:
        return {row["slide_id"]: row for row in csv.DictReader(fh)}


def stage_record(result: RunResult) -> dict[str, Any]:
    (record,) = result.summary["stages"]
    return record


def test_bad_slides_are_recorded_and_the_rest_goes_on(
    run_tile: RunTile, slides_dir: Path, tmp_path: Path
) -> None:
    folder = link(slides_dir, tmp_path / "slides", [f"{CMU}.svs", f"{TCGA}.svs", *BAD])
    data = (slides_dir / f"{CMU}.svs").read_bytes()
    (folder / "nested").mkdir()
    (folder / "nested" / "truncated.svs").write_bytes(data[: len(data) // 2])
    (folder / "notes.txt").write_text("not a slide")  # ignored: not a slide extension

    result = run_tile({"slides": str(folder)})
    record = stage_record(result)
    assert record["status"] == "done" and record["failures"] == 5
    table = rows(result)
    assert set(table) == {CMU, TCGA, "unreadable", "unopenable", "broken", "truncated"}
    assert table[CMU]["status"] == "ok" and table[CMU]["error"] == ""
    assert (table[CMU]["mpp"], table[CMU]["mpp_source"]) == ("0.499", "metadata")
    assert "mpp_overrides: {tcga-cr-7395-01a-01-ts1:" in table[TCGA]["error"]
    assert "cannot read" in table["unreadable"]["error"]
    for name in ("unopenable", "broken", "truncated"):
        assert table[name]["status"] == "failed" and "cannot open" in table[name]["error"]

    out = result.run_dir / "stages" / "tile"
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert {f["item"] for f in failures} == set(table) - {CMU}
    for failure in failures:
        assert failure["stage"] == "tile" and failure["reason"] == table[failure["item"]]["error"]
        assert Path(failure["path"]).name.startswith(failure["item"])

    counts = {m: len(read_coords(out / "coords" / m / f"{CMU}.h5")) for m in ("10x", "20x")}
    assert counts["10x"] > 0 and counts["20x"] >= counts["10x"]
    assert {m: int(table[CMU][f"patches_{m}"]) for m in counts} == counts
    totals = {"patches_10x": counts["10x"], "patches_20x": counts["20x"]}
    assert record["metrics"] == {"slides": 1, "failed": 5, **totals}
    assert sorted(p.name for p in (out / "coords" / "20x").iterdir()) == [f"{CMU}.h5"]
    assert "stages/tile/slides.csv" in record["artifacts"] and "stages/tile/qc" in record["artifacts"]
    with Image.open(out / "qc" / f"{CMU}.png") as qc:
        assert max(qc.size) <= 1024 + 16 and qc.size[0] > 700


def test_a_slide_without_any_tissue_patch_is_a_recorded_failure(
    run_tile: RunTile, slides_dir: Path, tmp_path: Path
) -> None:
    """OpenSlide's 16 x 16 px `small.svs` opens and reads, but no 256 px patch fits: an empty bag
    would reach the models as a silent zero, so the slide is skipped with the reason."""
    folder = link(slides_dir, tmp_path / "slides", [f"{CMU}.svs", "openslide-fixtures/small.svs"])
    result = run_tile({"slides": str(folder), "qc_thumbnails": False})
    table = rows(result)
    assert table[CMU]["status"] == "ok" and table["small"]["status"] == "failed"
    assert (
        "slide small: the whole slide 16 x 16 px at 0.499 µm/px covers less than `min_tissue` (50%) of "
        "one 256 px patch at 10x, 20x (257 level-0 px at the finest); lower `patch_size` or `min_tissue`"
    ) in table["small"]["error"]
    out = result.run_dir / "stages" / "tile"
    assert not (out / "coords" / "20x" / "small.h5").exists()
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert [f["item"] for f in failures] == ["small"]


def test_override_makes_a_slide_without_mpp_work(run_tile: RunTile, slides_dir: Path, tmp_path: Path) -> None:
    folder = link(slides_dir, tmp_path / "slides", [f"{TCGA}.svs"])
    result = run_tile({"slides": str(folder), "mpp_overrides": {TCGA: 0.25}, "qc_thumbnails": False})
    assert stage_record(result)["status"] == "done"
    assert (rows(result)[TCGA]["status"], rows(result)[TCGA]["mpp_source"]) == ("ok", "override")
    out = result.run_dir / "stages" / "tile"
    assert not (out / "qc").exists()

    fine = read_coords(out / "coords" / "20x" / f"{TCGA}.h5")
    coarse = read_coords(out / "coords" / "10x" / f"{TCGA}.h5")
    expected = {
        "slide_id": TCGA,
        "slide_path": str(folder / f"{TCGA}.svs"),
        "reader": "openslide",
        "magnification": "20x",
        "target_mpp": 0.5,
        "patch_size": 256,
        "patch_size_level0": 512,
        "read_level": 1,  # downsample 2.0005 serves 0.5 µm/px from 0.25
        "read_size": 256,
        "overlap": 0,
        "source_mpp": 0.25,
        "mpp_source": "override",
        "level0_width": 4443,
        "level0_height": 3567,
        "min_tissue": 0.5,
        "parent_magnification": "10x",
    }
    assert {k: fine.attrs[k] for k in expected} == expected
    with h5py.File(out / "coords" / "20x" / f"{TCGA}.h5") as f:  # also where CLAM/TRIDENT look
        assert f["coords"].attrs["patch_size"] == 256 and f["coords"].dtype == np.int64
    assert coarse.attrs["child_magnification"] == "20x" and coarse.attrs["patch_size_level0"] == 1024
    assert fine.parent is not None and coarse.child_offsets is not None
    assert (fine.coords >= coarse.coords[fine.parent]).all()
    assert (fine.coords + 512 <= coarse.coords[fine.parent] + 1024).all()
    assert coarse.child_offsets[-1] == len(fine)

    tiling = read_json(out / "tiling.json")
    assert tiling["format"] == "histo.tiling/1"
    assert tiling["reader"] == {"name": "openslide", "params": {"fast_jpeg2000": True}}
    assert [(m["name"], m["mpp"], m["parent"]) for m in tiling["magnifications"]] == [
        ("10x", 1.0, None),
        ("20x", 0.5, "10x"),
    ]
    assert tiling["slides"][TCGA]["mpp_override"] == 0.25
    assert tiling["slides"][TCGA]["patches"] == {"10x": len(coarse), "20x": len(fine)}


def test_mpp_csv_and_its_bad_rows(run_tile: RunTile, slides_dir: Path, tmp_path: Path) -> None:
    folder = link(slides_dir, tmp_path / "slides", [f"{TCGA}.svs"])
    good = tmp_path / "mpp.csv"
    good.write_text(f"slide_id,mpp\n{TCGA},0.25\nunknown-slide,0.5\n")
    result = run_tile({"slides": str(folder), "mpp_csv": str(good), "qc_thumbnails": False}, out="good")
    assert rows(result)[TCGA]["mpp_source"] == "override"

    bad = tmp_path / "bad.csv"
    bad.write_text(f"slide_id,mpp\nother,0.5\n{TCGA},abc\n,0.3\n")
    result = run_tile({"slides": str(folder), "mpp_csv": str(bad)}, out="bad")
    error = stage_record(result)["error"]
    assert str(bad) in error and f"row 3 ({TCGA}): mpp 'abc' is not a number" in error
    assert "row 4: slide_id is empty" in error


def test_rerun_writes_identical_outputs(run_tile: RunTile, slides_dir: Path, tmp_path: Path) -> None:
    folder = link(slides_dir, tmp_path / "slides", [f"{CMU}.svs", "broken/broken.svs"])
    first = run_tile({"slides": str(folder)}, out="first").run_dir / "stages" / "tile"
    second = run_tile({"slides": str(folder)}, out="second").run_dir / "stages" / "tile"
    files = sorted(str(p.relative_to(first)) for p in first.rglob("*") if p.is_file())
    assert files == [
        f"coords/10x/{CMU}.h5",
        f"coords/20x/{CMU}.h5",
        "failures.jsonl",
        f"qc/{CMU}.png",
        "slides.csv",
        "stage.json",  # holds timings: the one file allowed to differ
        "tiling.json",
    ]
    for name in files[:-2] + files[-1:]:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_resume_skips_slides_whose_outputs_exist(
    histo_plugins: Plugins, slides_dir: Path, tmp_path: Path
) -> None:
    folder = link(slides_dir, tmp_path / "slides", [f"{CMU}.svs", f"{TCGA}.svs"])
    config = TileConfig.model_validate({"slides": folder, "mpp_overrides": {TCGA: 0.25}})
    out = tmp_path / "run" / "stages" / "tile"
    out.mkdir(parents=True)

    def context() -> StageContext:
        log = logging.getLogger("test-tile")
        return StageContext("tile", tmp_path / "run", out, 0, "cpu", False, log, show_progress=False)

    TileStage(config).run(context())
    table = (out / "slides.csv").read_bytes()
    cmu_coords = out / "coords" / "20x" / f"{CMU}.h5"
    tcga_coords = out / "coords" / "20x" / f"{TCGA}.h5"
    stamps = {p: p.stat().st_mtime_ns for p in (cmu_coords, tcga_coords)}
    os.utime(cmu_coords, ns=(1, 1))  # any rewrite would change these times
    os.utime(tcga_coords, ns=(1, 1))
    (out / "qc" / f"{TCGA}.png").unlink()  # as if killed before the QC image of this slide
    (out / "slides.csv").unlink()

    ctx = context()
    TileStage(config).run(ctx)
    assert cmu_coords.stat().st_mtime_ns == 1  # complete: kept
    assert tcga_coords.stat().st_mtime_ns != 1 and stamps  # incomplete: tiled again
    assert (out / "qc" / f"{TCGA}.png").is_file()
    assert (out / "slides.csv").read_bytes() == table
    assert ctx.metrics["slides"] == 2


def test_no_slide_tiled_fails_the_stage(run_tile: RunTile, slides_dir: Path, tmp_path: Path) -> None:
    folder = link(slides_dir, tmp_path / "slides", BAD[1:])
    result = run_tile({"slides": str(folder)})
    record = stage_record(result)
    assert record["status"] == "failed" and "no slide could be tiled (2 failed)" in record["error"]
    assert len(rows(result)) == 2  # the table still says why


def test_empty_folder_and_clashing_ids_are_user_errors(histo_plugins: Plugins, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "s1.svs").write_bytes(b"x")
    (tmp_path / "b" / "s1.tiff").write_bytes(b"x")
    ctx = StageContext("tile", tmp_path, tmp_path, 0, "cpu", False, logging.getLogger("t"))
    with pytest.raises(HistoError, match=r"share slide ids.*s1"):
        TileStage(TileConfig(slides=tmp_path)).run(ctx)
    with pytest.raises(HistoError, match=r"no file with extension \.ndpi below"):
        TileStage(TileConfig(slides=tmp_path, extensions=["NDPI"])).run(ctx)


@pytest.mark.parametrize(
    "params,message",
    [
        ({"slides": "x", "overlap": 256}, "overlap (256) must be smaller than patch_size"),
        ({"slides": "x", "magnifications": ["20x", "15x"]}, "do not nest"),
        ({"slides": "x", "magnifications": ["twenty"]}, "'twenty' is not a magnification"),
        ({"slides": "x", "min_tissue": 1.5}, "stages.tile.params.min_tissue"),
        ({"slides": "x", "mpp_overrides": {"a": -1}}, "stages.tile.params.mpp_overrides.a"),
        ({"slides": "x", "patch": 256}, "stages.tile.params.patch"),
        ({}, "exactly one of `slides`"),
        ({"slides": "x", "reader": "opensilde"}, "stages.tile.params.reader.name"),
        ({"slides": "x", "segmenter": {"name": "otsu", "params": {"median": 3}}}, "segmenter.params.median"),
    ],
)
def test_config_errors_name_the_key(
    load_recipe_text: Callable[..., Any], params: dict[str, Any], message: str
) -> None:
    text = yaml.safe_dump({"stages": {"tile": {"stage": "tile", "params": params}}})
    with pytest.raises(RecipeError) as info:
        load_recipe_text(text)
    assert message in str(info.value)


def test_plain_images_through_the_image_reader(run_tile: RunTile, slides_dir: Path, tmp_path: Path) -> None:
    from histo.plugins.readers.openslide_reader import OpenSlideReader

    with OpenSlideReader().open(slides_dir / f"{CMU}.svs") as slide:
        region = slide.read_region((0, 600), 0, (2220, 2367))
    (tmp_path / "rois").mkdir()
    Image.fromarray(region).save(tmp_path / "rois" / "roi-1.png")
    params = {
        "slides": str(tmp_path / "rois"),
        "extensions": [".png"],
        "reader": {"name": "image", "params": {"mpp": 0.499}},
        "magnifications": [{"name": "hi", "mpp": 0.5}, "10x"],
        "parent_rule": "expand",
    }
    result = run_tile(params)
    row = rows(result)["roi-1"]
    assert (row["status"], row["mpp_source"]) == ("ok", "config")
    assert int(row["patches_hi"]) > int(row["patches_10x"]) > 0
    tiling = read_json(result.run_dir / "stages" / "tile" / "tiling.json")
    assert tiling["reader"]["params"]["mpp"] == 0.499
    assert [m["name"] for m in tiling["magnifications"]] == ["10x", "hi"]


class LinkSlides(Stage[EmptyConfig]):
    """A stand-in upstream stage that leaves a slide in its folder (as `synthesize` does)."""

    source: Path

    def run(self, ctx: StageContext) -> None:
        (ctx.out_dir / "slides").mkdir()
        (ctx.out_dir / "slides" / "up.svs").symlink_to(self.source)


def test_slides_from_an_upstream_stage(
    register_plugin: Callable[..., Plugins],
    load_recipe_text: Callable[..., Any],
    slides_dir: Path,
    tmp_path: Path,
) -> None:
    LinkSlides.source = slides_dir / f"{CMU}.svs"

    class Upstream:
        @hookimpl
        def histo_stages(self) -> list[ComponentSpec[Any]]:
            return [ComponentSpec("link_slides", LinkSlides, EmptyConfig)]

    plugins = register_plugin(Upstream(), "upstream")
    tile = {"stage": "tile", "params": {"slides_from": "make", "qc_thumbnails": False}}
    text = yaml.safe_dump({"stages": {"make": {"stage": "link_slides"}, "tile": tile}})
    result = run_recipe(load_recipe_text(text), tmp_path / "run", plugins=plugins, quiet=True)
    assert result.ok
    assert rows(result)["up"]["status"] == "ok"


@pytest.mark.slow
def test_histo_run_end_to_end(histo_plugins: Plugins, slides_dir: Path, tmp_path: Path) -> None:
    folder = link(slides_dir, tmp_path / "slides", [f"{CMU}.svs", f"{TCGA}.svs", "broken/broken.svs"])
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"""
name: tile-e2e
stages:
  tile:
    stage: tile
    params:
      slides: {folder}
      segmenter: {{name: otsu, params: {{target_mpp: 8}}}}
      magnifications: [10x, 20x]
      mpp_overrides: {{{TCGA}: 0.25}}
"""
    )
    out = tmp_path / "run"
    assert main(["run", str(recipe), "--out", str(out), "--quiet"]) == 0
    summary = read_json(out / "summary.json")
    assert summary["status"] == "done" and summary["failures"] == 1
    table = {r["slide_id"]: r["status"] for r in csv.DictReader((out / "stages/tile/slides.csv").open())}
    assert table == {CMU: "ok", TCGA: "ok", "broken": "failed"}
    assert main(["run", str(recipe), "--out", str(out), "--quiet"]) == 0  # unchanged: reused
    assert read_json(out / "summary.json")["stages"][0]["status"] == "cached"


def _tile_as_rank(rank: int, world: int, folder: str, out: str, init: str, report: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    try:
        log = logging.getLogger(f"tile-rank{rank}")
        run_dir = Path(out).parent
        ctx = StageContext("tile", run_dir, Path(out), 0, "cpu", False, log, rank=rank, world_size=world)
        params = {"slides": folder, "mpp_overrides": {TCGA: 0.25}, "qc_thumbnails": False}
        TileStage(TileConfig.model_validate(params)).run(ctx)
        result = {"metrics": ctx.metrics, "failures": ctx.failures}
        Path(report, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_torchrun_ranks_split_the_slides(slides_dir: Path, tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    folder = link(slides_dir, tmp_path / "slides", [f"{CMU}.svs", f"{TCGA}.svs", "broken/broken.svs"])
    out, report = tmp_path / "run" / "stages" / "tile", tmp_path / "report"
    out.mkdir(parents=True)
    report.mkdir()
    args = (2, str(folder), str(out), str(tmp_path / "init"), str(report))
    mp.spawn(_tile_as_rank, args=args, nprocs=2, join=True)
    ranks = [json.loads((report / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert (
        ranks[0]["metrics"]
        == ranks[1]["metrics"]
        == {
            "slides": 2,
            "failed": 1,
            "patches_10x": ranks[0]["metrics"]["patches_10x"],
            "patches_20x": ranks[0]["metrics"]["patches_20x"],
        }
    )
    assert sum(len(r["failures"]) for r in ranks) == 1  # each slide tiled by exactly one rank
    with (out / "slides.csv").open(newline="") as fh:
        table = {row["slide_id"]: row["status"] for row in csv.DictReader(fh)}
    assert table == {"broken": "failed", CMU: "ok", TCGA: "ok"}


def test_a_folder_of_pngs_with_their_resolution_tiles_with_reader_image_alone(
    run_tile: RunTile, slides_dir: Path, tmp_path: Path
) -> None:
    """PNGs that state their pixel size (pHYs) need no `extensions` and no mpp: only `reader: image`.
    A blank one fails with a message that says its tissue mask was empty and which setting to try."""
    from histo.plugins.readers.openslide_reader import OpenSlideReader

    with OpenSlideReader().open(slides_dir / f"{CMU}.svs") as slide:
        region = slide.read_region((0, 600), 0, (2220, 2367))
    folder = tmp_path / "rois"
    (folder / "case-2").mkdir(parents=True)
    dpi = 25_400 / 0.499
    Image.fromarray(region).save(folder / "roi-1.png", dpi=(dpi, dpi))
    Image.fromarray(region).save(folder / "case-2" / "roi-2.jpg", dpi=(50_900, 50_900))
    Image.new("RGB", (1200, 1200), "white").save(folder / "glass.png", dpi=(dpi, dpi))
    (folder / "notes.txt").write_text("not an image")
    result = run_tile({"slides": str(folder), "reader": "image"})
    table = rows(result)
    assert sorted(table) == ["glass", "roi-1", "roi-2"]
    assert (table["roi-1"]["status"], table["roi-1"]["mpp"], table["roi-1"]["mpp_source"]) == (
        "ok", "0.499", "metadata"
    )  # fmt: skip
    assert (table["roi-2"]["status"], table["roi-2"]["mpp"], table["roi-2"]["mpp_source"]) == (
        "ok", "0.499018", "metadata"
    )  # fmt: skip
    assert int(table["roi-1"]["patches_20x"]) > int(table["roi-1"]["patches_10x"]) > 0
    assert table["glass"]["status"] == "failed"
    error = table["glass"]["error"]
    assert "slide glass: the tissue mask is empty: segmenter `otsu` found no tissue" in error
    assert "`min_tissue_area_um2` (now 50000 µm²" in error
    assert "`segmenter: {name: otsu, params: {min_tissue_area_um2: 5000}}`" in error
    resolved = yaml.safe_load((result.run_dir / "recipe.yaml").read_text())
    assert resolved["stages"]["tile"]["params"]["extensions"] is None  # the reader's own were used


def test_a_qc_image_that_fails_in_the_background_fails_its_slide_alone(
    run_tile: RunTile, slides_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """QC images are drawn on a background thread; one that fails still fails its slide (no coords
    left behind, a recorded reason), and the other slide is kept."""
    from histo.plugins.tiling import qc

    render = qc.render

    def flaky(thumbnail: Any, downsample: float, mask: Any, grids: Any) -> Any:
        if thumbnail.shape[0] < 900:  # the TCGA slide's thumbnail (822 px high; CMU's is 989)
            raise ValueError("no room on the canvas")
        return render(thumbnail, downsample, mask, grids)

    monkeypatch.setattr(qc, "render", flaky)
    folder = link(slides_dir, tmp_path / "slides", [f"{CMU}.svs", f"{TCGA}.svs"])
    result = run_tile({"slides": str(folder), "mpp_overrides": {TCGA: 0.25}})
    table = rows(result)
    assert table[CMU]["status"] == "ok"
    assert table[TCGA]["status"] == "failed" and "QC image: ValueError: no room" in table[TCGA]["error"]
    out = result.run_dir / "stages" / "tile"
    assert (out / "qc" / f"{CMU}.png").is_file() and not (out / "qc" / f"{TCGA}.png").exists()
    assert not (out / "coords" / "20x" / f"{TCGA}.h5").exists()


def test_every_slide_is_closed_once_whether_or_not_the_qc_thread_took_it(
    run_tile: RunTile, slides_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenSlide slides go to the QC thread, which closes them after drawing; with QC off (or a
    slide that fails) the stage closes them itself. A handle left open per slide would run a
    thousand-slide cohort out of file descriptors."""
    from histo.plugins.readers.openslide_reader import OpenSlideSlide

    opened: list[int] = []
    closed: list[int] = []
    real_init, real_close = OpenSlideSlide.__init__, OpenSlideSlide.close

    def init(self: OpenSlideSlide, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        opened.append(id(self))

    def close(self: OpenSlideSlide) -> None:
        closed.append(id(self))
        real_close(self)

    monkeypatch.setattr(OpenSlideSlide, "__init__", init)
    monkeypatch.setattr(OpenSlideSlide, "close", close)
    folder = link(slides_dir, tmp_path / "slides", [f"{CMU}.svs", f"{TCGA}.svs"])
    overrides = {"mpp_overrides": {TCGA: 0.25}}
    for qc_on, out in ((True, "qc"), (False, "no-qc")):
        opened.clear()
        closed.clear()
        result = run_tile({"slides": str(folder), "qc_thumbnails": qc_on, **overrides}, out=out)
        assert stage_record(result)["status"] == "done"
        assert len(opened) == 2 and sorted(closed) == sorted(opened), qc_on
        assert (result.run_dir / "stages" / "tile" / "qc" / f"{TCGA}.png").exists() == qc_on


def test_qc_thread_runs_below_the_tiling_threads() -> None:
    from histo.plugins.tiling.qc_writer import NICENESS, QcWriter

    writer = QcWriter()
    seen: list[int] = []
    writer.submit("s", lambda: seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
    assert writer.finish() == []
    assert seen == [NICENESS] and os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < NICENESS
