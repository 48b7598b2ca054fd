"""Does memory stay flat in the number of slides? Peak memory of `histo run` (tile + extract) on
cohorts of 1x, 4x and 16x as many slides, each size in a fresh process, measured in one run.

The cohort is the real `cmu-1-small-region.svs` (../shared/data/slides) linked under different names,
so every slide is read, tiled and embedded in full; the work grows with the count and the memory
should not. Peak resident memory is the largest ru_maxrss among the finished child processes
(`histo run` and its reader workers). It prints each size's peak and its ratio to the smallest.

    python benchmarks/memory_per_slide.py                       # 4, 16, 64 slides, handcrafted
    python benchmarks/memory_per_slide.py --slides 8 32 --extractor efficientnet_lite0
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SLIDE = ROOT.parent / "shared" / "data" / "slides" / "cmu-1-small-region.svs"

RECIPE = """\
name: memory
stages:
  tile:
    stage: tile
    params: {{slides: {folder}, magnifications: [10x, 20x], patch_size: 224, qc_thumbnails: true}}
  extract:
    stage: extract
    params: {{tiles: tile, extractor: {extractor}, batch_size: 64, shards: true}}
"""


def measure(count: int, extractor: str, work: Path) -> dict[str, float]:
    """Run tile + extract on `count` linked copies of the slide in a child process."""
    folder = work / f"slides-{count}"
    folder.mkdir()
    for i in range(count):
        (folder / f"slide-{i:04d}.svs").symlink_to(SLIDE)
    recipe = work / f"recipe-{count}.yaml"
    recipe.write_text(RECIPE.format(folder=folder, extractor=extractor))
    script = (
        "import resource, subprocess, sys, json;"
        "rc = subprocess.run([sys.executable, '-m', 'histo', 'run', sys.argv[1], '--out', sys.argv[2],"
        " '--quiet']).returncode;"
        "print(json.dumps({'rc': rc, 'peak_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))"
    )
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-c", script, str(recipe), str(work / f"run-{count}")],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - start
    result = json.loads(run.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise SystemExit(f"histo run failed for {count} slides: {run.stderr[-2000:]}")
    summary = json.loads((work / f"run-{count}" / "summary.json").read_text())
    patches = sum(
        int(stage["metrics"].get("patches", 0)) for stage in summary["stages"] if stage["id"] == "extract"
    )
    return {"slides": count, "patches": patches, "peak_mb": result["peak_kb"] / 1024, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--slides", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--extractor", default="handcrafted")
    args = parser.parse_args()
    if not SLIDE.is_file():
        raise SystemExit(f"{SLIDE} is missing: the benchmark needs ../shared/data beside the checkout")
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; extractor {args.extractor}")
    print(f"{'slides':>7} {'patches':>8} {'peak MB':>9} {'x smallest':>11} {'seconds':>8}")
    smallest = None
    with tempfile.TemporaryDirectory() as tmp:
        for count in sorted(args.slides):
            row = measure(count, args.extractor, Path(tmp))
            smallest = smallest or row["peak_mb"]
            print(
                f"{row['slides']:>7} {row['patches']:>8} {row['peak_mb']:>9.0f} "
                f"{row['peak_mb'] / smallest:>11.2f} {row['seconds']:>8.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
