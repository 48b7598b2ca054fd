"""Time tissue segmentation + tiling (256 px at 0.5 µm/px, and 10x + 20x together), with and
without the tile stage's QC image, against CLAM in the same run.

Slides: a 40,960 x 40,960 JPEG pyramidal TIFF at 0.25 µm/px made once by
../shared/bench/make_big_slide.py into a cache folder outside the repository (about 4 minutes and
770 MB), and the two real SVS files in ../shared/data/slides (the TCGA one has no mpp: 0.25 is assumed).

Baseline, measured in the same run: CLAM's own segmentation + patching (`WholeSlideImage.segmentTissue`
and `process_contours` with create_patches_fp.py's default parameters, except the area filters, set to
ours in µm², since CLAM's defaults drop every piece of the small SVS files), imported from a CLAM checkout
named by --clam-dir or $CLAM_DIR (it needs opencv-python-headless and tqdm, benchmark-only installs).
Without CLAM the script says so and falls back to a naive per-patch Python loop over our own mask.
Both sides get a fresh slide handle per repeat (no warm tile cache) and both write their coords files;
CLAM writes no QC image. With the QC image, histo is timed drawing it in line and, as the tile stage
does, on a low-priority background thread that takes the slide over (cuts the thumbnail from the
segmenter's reads, draws, writes, closes the slide) while the next slide is tiled (per slide over 8 in
a row, every image written). Every row gives wall seconds and the CPU seconds of the process and
its children (user and kernel), medians over the repeats. On slides with JPEG 2000 levels, the tile
stage's default is also timed with OpenSlide decoding them (the reader's `fast_jpeg2000: false`, as
before). Last, the first slide in a fresh process against the next ones.

usage: python benchmarks/tiling.py [--quick] [--json PATH] [--cache-dir DIR] [--clam-dir DIR]
                                   [--repeats N] [--naive] [--no-big]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from histo.interfaces import Slide, TissueMask
from histo.plugins.readers import OpenSlideConfig
from histo.plugins.readers.aperio_jp2k import jp2k_levels
from histo.plugins.readers.openslide_reader import OpenSlideReader
from histo.plugins.stages.tile import QC_SIZE
from histo.plugins.tiling import Grid, GridPlan, Magnification, nest, plan_grids, qc, tile
from histo.plugins.tiling.coords_file import write_coords
from histo.plugins.tiling.qc_writer import QcWriter
from histo.plugins.tiling.reads import RecordingSlide
from histo.plugins.tissue import OtsuConfig
from histo.plugins.tissue.saturation import OtsuSegmenter

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SLIDES = SHARED / "data" / "slides"
BIG_SIZE = 40960
PATCH = 256
MIN_TISSUE = 0.5
T = TypeVar("T")
ONE_MAG = [Magnification(name="0.5mpp", mpp=0.5)]
TWO_MAGS = [Magnification.model_validate("10x"), Magnification.model_validate("20x")]


@dataclass(frozen=True)
class Case:
    name: str
    path: Path
    mpp_override: float | None  # for the slide without mpp in its file


def big_slide(cache: Path) -> Path:
    """The large fixture, generated once (atomically) into `cache`."""
    path = cache / f"big_{BIG_SIZE}.tiff"
    if path.is_file():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    script = SHARED / "bench" / "make_big_slide.py"
    partial = path.with_suffix(".partial.tiff")
    print(f"making {path} with {script} (about 4 minutes, 770 MB) ...", flush=True)
    source = SLIDES / "cmu-1-small-region.svs"
    subprocess.run([sys.executable, str(script), str(source), str(partial), str(BIG_SIZE)], check=True)
    partial.replace(path)
    return path


def ours(
    case: Case,
    mags: list[Magnification],
    out: Path,
    qc_from: str = "",
    writer: QcWriter | None = None,
    fast_jpeg2000: bool = True,
) -> tuple[float, list[Grid]]:
    """Segment, tile and write coords with histo's defaults; seconds exclude opening the slide.

    `qc_from`: also draw and write the tile stage's QC image, its thumbnail read from the slide again
    ("slide", as before) or cut from the segmenter's reads ("reads", the stage's default).
    `fast_jpeg2000=False`: OpenSlide decodes JPEG 2000 levels itself (the reader's setting).
    """
    reader = OpenSlideReader(OpenSlideConfig(fast_jpeg2000=fast_jpeg2000))
    opened = reader.open(case.path, case.mpp_override)
    slide: Slide = RecordingSlide(opened) if qc_from == "reads" else opened
    segmenter = OtsuSegmenter(OtsuConfig())
    start = time.perf_counter()
    mpp = slide.mpp.mean
    plans = plan_grids(slide.level_downsamples, mpp, mags, PATCH, slide=case.name)
    mask = segmenter.segment(slide)
    grids = tile(mask, plans, MIN_TISSUE, slide.dimensions)
    for grid in grids:
        attrs = {"slide_id": case.name, "source_mpp": mpp}
        write_coords(out / f"{grid.plan.magnification.name}.h5", grid, attrs)
    if writer is not None:  # as the tile stage does: the slide handed to the QC thread, which closes it

        def draw_and_close() -> None:
            try:
                qc.save(qc.render(*qc.thumbnail(slide, QC_SIZE), mask, grids), out / "qc.png")
            finally:
                slide.close()

        writer.submit(case.name, draw_and_close)
        return time.perf_counter() - start, grids
    if qc_from:
        image, downsample = qc.thumbnail(slide, QC_SIZE)
        qc.save(qc.render(image, downsample, mask, grids), out / "qc.png")
    seconds = time.perf_counter() - start
    slide.close()
    return seconds, grids


# slides in a row for the background QC timing: a cohort's steady state, where each image is drawn
# while the next slide is tiled; only the last one's drawing is waited for (1/8 of a slide's QC here)
STREAMED = 8


def ours_streamed(
    case: Case, mags: list[Magnification], out: Path, slides: int = STREAMED, fast_jpeg2000: bool = True
) -> tuple[float, list[Grid]]:
    """Per-slide seconds of tiling the slide `slides` times in a row as the tile stage does: QC from the
    segmenter's reads, drawn in the background while the next slide is tiled, all images written."""
    writer = QcWriter()
    start = time.perf_counter()
    for _ in range(slides):
        _, grids = ours(case, mags, out, "reads", writer, fast_jpeg2000)
    failures = writer.finish()
    assert not failures, failures
    return (time.perf_counter() - start) / slides, grids


def naive_grids(mask: TissueMask, plans: list[GridPlan], dims: tuple[int, int]) -> dict[str, np.ndarray]:
    """One Python iteration per candidate patch (what the design forbids), same rules as `tile`."""
    grids: dict[str, np.ndarray] = {}
    kept_before: set[tuple[int, int]] | None = None
    for plan in plans:
        kept = set()
        step, size, d = plan.stride_level0, plan.patch_size_level0, mask.downsample
        parent_step = plans[plan.parent].stride_level0 if plan.parent is not None else 0
        for y in range(0, dims[1], step):
            for x in range(0, dims[0], step):
                x0, y0 = round(x / d), round(y / d)
                x1, y1 = max(round((x + size) / d), x0 + 1), max(round((y + size) / d), y0 + 1)
                if mask.mask[y0:y1, x0:x1].sum() / ((x1 - x0) * (y1 - y0)) < MIN_TISSUE:
                    continue
                if kept_before is not None and (x - x % parent_step, y - y % parent_step) not in kept_before:
                    continue
                kept.add((x, y))
        grids[plan.magnification.name] = np.array(sorted(kept), np.int64).reshape(-1, 2)
        kept_before = kept
    return grids


def naive(case: Case, mags: list[Magnification], out: Path) -> tuple[float, dict[str, int]]:
    """Our segmentation, then the naive per-patch loop; seconds exclude opening the slide."""
    slide = OpenSlideReader().open(case.path, case.mpp_override)
    start = time.perf_counter()
    plans = plan_grids(slide.level_downsamples, slide.mpp.mean, mags, PATCH, slide=case.name)
    grids = naive_grids(OtsuSegmenter(OtsuConfig()).segment(slide), plans, slide.dimensions)
    for name, coords in grids.items():
        np.save(out / f"naive-{name}.npy", coords)
    seconds = time.perf_counter() - start
    slide.close()
    return seconds, {name: len(coords) for name, coords in grids.items()}


def grid_only(case: Case, repeats: int) -> None:
    """Tiling alone, from one mask: the vectorised grids against the per-patch loop (same patches).

    Three magnifications, the finest the scan allows (40x on 0.25 µm/px slides), to show how the
    loop grows with the number of candidates."""
    with OpenSlideReader().open(case.path, case.mpp_override) as slide:
        mask = OtsuSegmenter(OtsuConfig()).segment(slide)
        finest = 40 if slide.mpp.mean < 0.3 else 20
        mags = [Magnification.model_validate(f"{finest // k}x") for k in (4, 2, 1)]
        plans = plan_grids(slide.level_downsamples, slide.mpp.mean, mags, PATCH)
        dims = slide.dimensions

    def vectorised() -> tuple[float, list[Grid]]:
        start = time.perf_counter()
        grids = tile(mask, plans, MIN_TISSUE, dims)
        return time.perf_counter() - start, grids

    def loop() -> tuple[float, dict[str, np.ndarray]]:
        start = time.perf_counter()
        grids = naive_grids(mask, plans, dims)
        return time.perf_counter() - start, grids

    fast, grids = repeat(repeats, vectorised)
    slow, reference = repeat(max(1, repeats // 3), loop)
    same = all(
        set(map(tuple, g.coords.tolist())) == set(map(tuple, reference[g.plan.magnification.name].tolist()))
        for g in grids
    )
    candidates = sum(-(-dims[0] // p.stride_level0) * -(-dims[1] // p.stride_level0) for p in plans)
    names = "+".join(m.name for m in nest(mags))
    patches = "+".join(str(len(g)) for g in grids)
    what = f"grids only ({names}, {candidates:,} candidates)"
    check = f"{patches} patches, identical: {same}"
    print(f"| {case.name} | {what} | {slow} | {fast} | x{slow.median / fast.median:.1f} | {check} |")


def clam(case: Case, clam_dir: Path, out: Path) -> tuple[float, tuple[int, np.ndarray, int]]:
    """CLAM's segmentTissue + process_contours with create_patches_fp.py's defaults, at 0.5 µm/px."""
    import h5py

    if str(clam_dir) not in sys.path:
        sys.path.insert(0, str(clam_dir))
    from wsi_core.WholeSlideImage import WholeSlideImage

    wsi = WholeSlideImage(str(case.path))
    handle = wsi.getOpenSlide()
    mpp = case.mpp_override or float(handle.properties["openslide.mpp-x"])
    downsamples = [d for d, _ in wsi.level_downsamples]
    patch_level = int(np.argmin([abs(d - 0.5 / mpp) for d in downsamples]))  # CLAM patches at a level
    seg_level = handle.get_best_level_for_downsample(64) if len(wsi.level_dim) > 1 else 0
    # CLAM's areas are in units of 512 x 512 level-0 pixels; its defaults (a_t 100, a_h 16) are sized
    # for whole slides and drop all the tissue of the two small SVS files, so match ours in µm² instead
    unit_um2 = (512 * mpp) ** 2
    defaults = OtsuConfig()
    areas = {"a_t": defaults.min_tissue_area_um2 / unit_um2, "a_h": defaults.max_hole_area_um2 / unit_um2}
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        wsi.segmentTissue(
            seg_level=seg_level, sthresh=8, mthresh=7, close=4, use_otsu=False,
            filter_params={**areas, "max_n_holes": 8},
        )  # fmt: skip
        wsi.process_contours(
            save_path=str(out), patch_level=patch_level, patch_size=PATCH, step_size=PATCH,
            use_padding=True, contour_fn="four_pt",
        )  # fmt: skip
    seconds = time.perf_counter() - start
    h5 = out / f"{wsi.name}.h5"
    coords = np.zeros((0, 2), np.int64)
    if h5.is_file():
        with h5py.File(h5) as f:
            coords = np.asarray(f["coords"][()], np.int64)
        h5.unlink()
    handle.close()
    return seconds, (len(coords), coords, round(PATCH * downsamples[patch_level]))


def coverage_iou(a: np.ndarray, size_a: int, b: np.ndarray, size_b: int, dims: tuple[int, int]) -> float:
    """Intersection over union of the areas two patch sets cover, on a 16-level-0-pixel raster."""
    cell = 16
    shape = (dims[1] // cell + size_a // cell + 2, dims[0] // cell + size_a // cell + 2)

    def raster(coords: np.ndarray, size: int) -> np.ndarray:
        canvas = np.zeros(shape, bool)
        for x, y in coords // cell:
            canvas[y : y + size // cell, x : x + size // cell] = True
        return canvas

    ra, rb = raster(a, size_a), raster(b, size_b)
    union = (ra | rb).sum()
    return float((ra & rb).sum() / union) if union else 1.0


@dataclass(frozen=True)
class Timing:
    median: float
    best: float
    user: float  # CPU seconds in user mode (this process and its children), median over the runs
    sys: float  # CPU seconds in the kernel, likewise

    def __str__(self) -> str:
        return f"{self.median:.3f} ({self.best:.3f})"


def cpu_seconds() -> tuple[float, float]:
    """User and kernel CPU seconds so far of this process (all threads) and its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + children.ru_utime, own.ru_stime + children.ru_stime


def repeat(n: int, run: Callable[..., tuple[float, T]], *args: Any, per: int = 1) -> tuple[Timing, T]:
    """Median and best seconds of `n` runs after a warm-up (imports, page cache; every run opens a
    fresh handle, so OpenSlide's tile cache is cold each time), their CPU time (divided by `per`, the
    slides one call tiles), and the last result."""
    run(*args)
    times, users, kernels, result = [], [], [], None
    for _ in range(n):
        user, kernel = cpu_seconds()
        seconds, result = run(*args)
        after = cpu_seconds()
        times.append(seconds)
        users.append((after[0] - user) / per)
        kernels.append((after[1] - kernel) / per)
    assert result is not None
    cpu = statistics.median(users), statistics.median(kernels)
    timing = Timing(statistics.median(times), min(times), *cpu)
    return timing, result


Job = tuple[Callable[..., tuple[float, Any]], tuple[Any, ...], int]  # run, its arguments, slides a call


def interleaved(n: int, jobs: dict[str, Job]) -> dict[str, tuple[Timing, Any]]:
    """`repeat` for several methods at once, taking turns (one run of each per round, after one warm-up
    run of each), so that a change in the machine's load falls on all of them alike."""
    for run, args, _ in jobs.values():
        run(*args)
    samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in jobs}
    results: dict[str, Any] = {}
    for _ in range(n):
        for name, (run, args, per) in jobs.items():
            user, kernel = cpu_seconds()
            seconds, results[name] = run(*args)
            after = cpu_seconds()
            samples[name].append((seconds, (after[0] - user) / per, (after[1] - kernel) / per))
    out = {}
    for name, runs in samples.items():
        walls = [wall for wall, _, _ in runs]
        cpu = statistics.median(u for _, u, _ in runs), statistics.median(k for _, _, k in runs)
        out[name] = (Timing(statistics.median(walls), min(walls), *cpu), results[name])
    return out


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    import openslide

    return (
        f"{model}, {os.cpu_count()} cores, load average {load}; Python {platform.python_version()}, "
        f"numpy {np.__version__}, OpenSlide {openslide.__library_version__}"
    )


def first_slide(case: Case, warm: bool) -> dict[str, float]:
    """In a fresh process: seconds to import what the tile stage imports, then of tiling the slide with
    its QC image in line three times (the stage's warm-up of h5py and PNG started first, or not): wall and
    CPU seconds of the first and the best of the next two."""
    code = f"""
import json, sys, tempfile, time
from pathlib import Path
start = time.perf_counter()
sys.path.insert(0, {str(ROOT / "benchmarks")!r})
import tiling as bench
imports = time.perf_counter() - start
case = bench.Case({case.name!r}, Path({str(case.path)!r}), {case.mpp_override!r})
if {warm!r}:
    from histo.plugins.tiling.warm import warm_up
    warm_up()
walls, cpus = [], []
with tempfile.TemporaryDirectory() as tmp:
    for _ in range(3):
        before = sum(bench.cpu_seconds())
        walls.append(bench.ours(case, bench.TWO_MAGS, Path(tmp), "reads")[0])
        cpus.append(sum(bench.cpu_seconds()) - before)
print(json.dumps({{"imports": imports, "first": walls[0], "next": min(walls[1:]),
                  "first_cpu": cpus[0], "next_cpu": min(cpus[1:])}}))
"""
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "histo-bench")
    parser.add_argument("--clam-dir", type=Path, default=os.environ.get("CLAM_DIR"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="3 repeats; no grid-only, 'read again' rows")
    parser.add_argument("--json", type=Path, help="also write every number to this JSON file")
    parser.add_argument("--naive", action="store_true", help="also time the naive loop when CLAM is there")
    parser.add_argument("--no-big", action="store_true", help="skip the 40,960 px slide")
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats

    cases = [] if args.no_big else [Case("big-40960", big_slide(args.cache_dir), None)]
    cases += [
        Case("cmu-1-small-region", SLIDES / "cmu-1-small-region.svs", None),
        Case("tcga-cr-7395 (mpp 0.25 assumed)", SLIDES / "tcga-cr-7395-01a-01-ts1.svs", 0.25),
    ]
    clam_dir = Path(args.clam_dir) if args.clam_dir else None
    if clam_dir is not None and not (clam_dir / "wsi_core" / "WholeSlideImage.py").is_file():
        print(f"CLAM_DIR={clam_dir} holds no wsi_core/WholeSlideImage.py: ignoring it")
        clam_dir = None
    if clam_dir is not None:
        try:
            import cv2  # noqa: F401
            import tqdm  # noqa: F401
        except ImportError as exc:
            print(f"CLAM needs {exc.name} (pip install opencv-python-headless tqdm): falling back")
            clam_dir = None
    if clam_dir is None:
        print("CLAM not available (set CLAM_DIR): the baseline is a NAIVE per-patch Python loop, not CLAM")

    command = " ".join([Path(sys.executable).name, *sys.argv])
    report: dict[str, Any] = {"machine": machine(), "command": command}
    report["load_before"] = os.getloadavg()
    print(f"machine: {report['machine']}")
    print(f"command: {report['command']}")
    print(f"repeats: {repeats}, methods taking turns (fresh slide handle each time); 'x base' is this row's")
    print("median over the first baseline's: the target is 0.5 or less with the QC image on; CPU seconds")
    print("(user and kernel, this process and its children) are per slide, medians\n")
    print("| slide | method | magnifications | patches | seconds: median (best) | user s | sys s | x base |")
    print("|---|---|---|---|---|---|---|---|")
    rows_out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for case in cases:
            with OpenSlideReader().open(case.path, case.mpp_override) as slide:
                dims = slide.dimensions
                jpeg2000 = bool(jp2k_levels(case.path, slide.level_dimensions))
            baselines: list[tuple[str, str, str, Timing]] = []
            jobs: dict[str, Job] = {}  # the baseline first in every round
            if clam_dir is not None:
                jobs["clam"] = (clam, (case, clam_dir, out), 1)
            if clam_dir is None or args.naive:
                jobs["naive"] = (naive, (case, TWO_MAGS, out), 1)
            jobs["one"] = (ours, (case, ONE_MAG, out), 1)
            jobs["two"] = (ours, (case, TWO_MAGS, out), 1)
            if not args.quick:
                jobs["slide"] = (ours, (case, TWO_MAGS, out, "slide"), 1)
            jobs["reads"] = (ours, (case, TWO_MAGS, out, "reads"), 1)
            jobs["streamed"] = (ours_streamed, (case, TWO_MAGS, out), STREAMED)
            if jpeg2000:  # the same, with OpenSlide's one-core JPEG 2000 decoder (before)
                jobs["openslide_jp2k"] = (ours_streamed, (case, TWO_MAGS, out, STREAMED, False), STREAMED)
            timed = interleaved(repeats, jobs)
            ours_one, grids_one = timed["one"]
            ours_two, grids_two = timed["two"]
            qc_reads, qc_streamed = timed["reads"][0], timed["streamed"][0]
            qc_slide = timed["slide"][0] if "slide" in timed else None
            if clam_dir is not None:
                seconds, (count, coords, size) = timed["clam"]
                fine = grids_one[0]
                iou = coverage_iou(fine.coords, fine.plan.patch_size_level0, coords, size, dims)
                label = f"CLAM seg+patch (coverage IoU with ours {iou:.2f})"
                baselines.append((label, "0.5 µm/px", str(count), seconds))
            if "naive" in timed:
                seconds, counts = timed["naive"]
                label = "+".join(str(v) for v in counts.values())
                baselines.append(("NAIVE per-patch loop (not CLAM)", "10x+20x", label, seconds))
            two = "+".join(str(len(g)) for g in grids_two)
            rows = [
                *baselines,
                ("histo", "0.5 µm/px", str(len(grids_one[0])), ours_one),
                ("histo, no QC", "10x+20x", two, ours_two),
            ]
            if qc_slide is not None:
                rows.append(("histo + QC, thumbnail read again (old way)", "10x+20x", two, qc_slide))
            rows += [
                ("histo + QC drawn in line", "10x+20x", two, qc_reads),
                ("histo + QC in the background (tile stage default)", "10x+20x", two, qc_streamed),
            ]
            if "openslide_jp2k" in timed:
                label = "histo + QC in the background, OpenSlide decoding JPEG 2000 (before)"
                rows.append((label, "10x+20x", two, timed["openslide_jp2k"][0]))
            base = baselines[0][3].median
            for method, mags, patches, t in rows:
                ratio = t.median / base
                cpu = f"{t.user:.3f} | {t.sys:.3f}"
                print(f"| {case.name} | {method} | {mags} | {patches} | {t} | {cpu} | {ratio:.2f} |")
                rows_out.append(
                    {
                        "slide": case.name,
                        "method": method,
                        "magnifications": mags,
                        "patches": patches,
                        "median_s": t.median,
                        "best_s": t.best,
                        "user_s": t.user,
                        "sys_s": t.sys,
                        "x_baseline": ratio,
                    }
                )
            sys.stdout.flush()
    report["rows"] = rows_out

    print("\nFirst slide in a fresh process (QC in line), against the next ones in the same process:\n")
    print("| slide | warm-up | imports s | first slide s | next (best) | first - next | CPU s: first, next |")
    print("|---|---|---|---|---|---|---|")
    report["first_slide"] = []
    for case in cases[-2:] if args.quick else cases:
        for warm in (False, True):
            numbers = statistics_of([first_slide(case, warm) for _ in range(2 if args.quick else 3)])
            extra = numbers["first"] - numbers["next"]
            times = f"{numbers['imports']:.3f} | {numbers['first']:.3f} | {numbers['next']:.3f}"
            cpu = f"{numbers['first_cpu']:.3f}, {numbers['next_cpu']:.3f}"
            print(f"| {case.name} | {'on' if warm else 'off'} | {times} | {extra:+.3f} | {cpu} |")
            report["first_slide"].append({"slide": case.name, "warm_up": warm, **numbers, "extra_s": extra})
            sys.stdout.flush()

    if not args.quick:
        loop, vectorised = "per-patch loop: median (best)", "vectorised: median (best)"
        print(f"\n| slide | what | {loop} | {vectorised} | speed-up | check |")
        print("|---|---|---|---|---|---|")
        for case in cases:
            grid_only(case, repeats)
    report["load_after"] = os.getloadavg()
    print(f"\nload average after: {', '.join(f'{v:.1f}' for v in report['load_after'])}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
        print(f"wrote {args.json}")
    return 0


def statistics_of(runs: list[dict[str, float]]) -> dict[str, float]:
    """Medians of each number over a few fresh processes."""
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


if __name__ == "__main__":
    sys.exit(main())
