"""Extraction end to end, slide to HDF5, as a user runs it: `histo run` with `efficientnet_lite0` on the
40,960 px generated slide, the old engine (glibc's default malloc, whole-batch forward passes) against
the default one, in one run.

Each measurement is a fresh `histo run RECIPE --rerun extract` process (start-up, reading the slide's
patches from the JPEG pyramid, resizing, normalising, the model, writing the bag), the tile stage
cached from a tile-only run made once. Engines alternate so that all see the same load:

- **old**: `HISTO_MALLOC_TUNING=0`, `HISTO_LEAN_MODULES=0` and `model_batch` = `batch_size` (64):
  what `histo run` did before the allocator work and the lean network;
- **new**: the defaults;
- any engine named by --extra: `packaged` (the defaults but the network as packaged),
  `tuned-whole` (the allocator alone: whole-batch passes), `workers1` (one reader worker and one
  model thread).

Printed per engine (medians over the repeats): the extract stage's patches/s (its own metric in
summary.json), the whole process's wall seconds, user and kernel CPU seconds, CPU milliseconds per
patch and peak resident memory (`wait4` on the child: other jobs on the machine do not change them,
except OpenMP threads spinning while the other core is taken), minor page faults; then the new / old
ratios and whether the features of every engine are bit-identical to the old ones.

The slide is made once by ../shared/bench/make_big_slide.py into --cache-dir (as
benchmarks/tiling.py does; about 4 minutes, 770 MB). --magnification 20x embeds its 2,833 patches
of 256 px at 0.5 µm/px (the workload the speed target was set on); 10x (the default, the quick mode)
its 719 patches of 256 px at 1 µm/px. Both read 256 px from a pyramid level (1 or 2) and resize to
224 px, so a patch costs the same at either.

    python benchmarks/extraction_e2e.py --repeats 3 --json extraction_e2e.json   # quick: 10x, < 3 min idle
    python benchmarks/extraction_e2e.py --magnification 20x --repeats 2          # the full slide, ~7 min idle
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from histo.io import write_json_atomic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiling import big_slide

HISTO = [sys.executable, "-m", "histo"]
ENGINES: dict[str, dict[str, Any]] = {
    "old": {"env": {"HISTO_MALLOC_TUNING": "0", "HISTO_LEAN_MODULES": "0"}, "set": {"model_batch": "64"}},
    "new": {"env": {}, "set": {}},
}
EXTRA: dict[str, dict[str, Any]] = {
    "workers1": {"env": {}, "set": {"num_workers": "1"}},  # a reader worker beside a 1-thread model
    "tuned-whole": {"env": {}, "set": {"model_batch": "64"}},  # the allocator alone
    "packaged": {"env": {"HISTO_LEAN_MODULES": "0"}, "set": {}},  # the network as packaged
}


def recipe(slide: Path, magnification: str, extract: bool) -> str:
    stages = (
        "stages:\n"
        "  tile:\n"
        "    stage: tile\n"
        f'    params: {{slides: {json.dumps(str(slide))}, magnifications: ["10x", "20x"]}}\n'
    )
    if extract:
        stages += (
            "  extract:\n"
            "    stage: extract\n"
            "    params: {tiles: tile, extractor: efficientnet_lite0, batch_size: 64, "
            f'magnifications: ["{magnification}"]}}\n'
        )
    return f"name: extraction_e2e\nseed: 0\n{stages}"


def run_child(folder: Path, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """One `histo run` of the extract stage in a fresh process; its rusage from wait4."""
    command = [*HISTO, "run", str(folder / "extract.yaml"), "--out", str(folder / name)]
    command += ["--rerun", "extract", "--quiet"]
    for key, value in spec["set"].items():
        command += ["--set", f"stages.extract.params.{key}={value}"]
    env = {**os.environ, **spec["env"]}
    start = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if child.returncode:
        raise SystemExit(f"{name}: `{' '.join(command)}` failed:\n{output.decode(errors='replace')}")
    summary = json.loads((folder / name / "summary.json").read_text())
    stage = next(s for s in summary["stages"] if s["id"] == "extract")
    return {
        "rate": float(stage["metrics"]["patches_per_s"]),
        "patches": int(stage["metrics"]["patches_extracted"]),
        "wall": wall,
        "user": usage.ru_utime,
        "sys": usage.ru_stime,
        "faults": usage.ru_minflt,
        "peak_mb": usage.ru_maxrss / 1024,
    }


def features(folder: Path, name: str, magnification: str) -> np.ndarray:
    import h5py

    (path,) = (folder / name / "stages" / "extract" / "features" / magnification).glob("*.h5")
    with h5py.File(path, "r") as f:
        return np.asarray(f["features"][()])


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--magnification", choices=["10x", "20x"], default="10x")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--extra", nargs="*", default=[], choices=sorted(EXTRA), help="more engines")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "histo-bench")
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    parser.add_argument(
        "--threads",
        type=int,
        help="OMP_NUM_THREADS for every child: with 1, CPU time per patch is the work itself, without "
        "OpenMP threads spinning while other jobs hold a core (a measure that load does not move)",
    )
    args = parser.parse_args()
    engines = {**ENGINES, **{name: EXTRA[name] for name in args.extra}}
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    slide = big_slide(args.cache_dir)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "tile.yaml").write_text(recipe(slide, args.magnification, extract=False))
        (folder / "extract.yaml").write_text(recipe(slide, args.magnification, extract=True))
        base = folder / "base"
        subprocess.run([*HISTO, "run", str(folder / "tile.yaml"), "--out", str(base), "--quiet"], check=True)
        for name in engines:
            shutil.copytree(base, folder / name)
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in engines}
        loads = [os.getloadavg()[0]]
        for _ in range(args.repeats):
            for name, spec in engines.items():
                results[name].append(run_child(folder, name, spec))
                loads.append(os.getloadavg()[0])
        reference = features(folder, "old", args.magnification)
        same = {
            name: bool(np.array_equal(reference, features(folder, name, args.magnification)))
            for name in engines
        }
    report(args, results, same, loads)


def report(
    args: argparse.Namespace,
    results: dict[str, list[dict[str, Any]]],
    same: dict[str, bool],
    loads: list[float],
) -> None:
    keys = ("rate", "wall", "user", "sys", "faults", "peak_mb")
    medians = {
        name: {k: statistics.median(r[k] for r in rows) for k in keys} for name, rows in results.items()
    }
    patches = results["old"][0]["patches"]
    for m in medians.values():
        m["cpu_ms_per_patch"] = 1000 * (m["user"] + m["sys"]) / patches
    print(
        f"# histo run, efficientnet_lite0, {args.magnification}: {patches} patches of the 40,960 px slide, "
        f"batch 64, {args.repeats} repeats, {os.cpu_count()} CPUs, "
        f"{'OMP_NUM_THREADS=' + str(args.threads) + ', ' if args.threads else ''}"
        f"load average {min(loads):.1f}-{max(loads):.1f}"
    )
    print(
        f"{'engine':<12} {'patches/s':>9} {'wall s':>7} {'user s':>7} {'sys s':>7} {'sys/user':>8} "
        f"{'cpu ms/p':>8} {'faults':>10} {'peak MB':>8} {'features':>10}"
    )
    for name, m in medians.items():
        rates = ", ".join(f"{r['rate']:.1f}" for r in results[name])
        print(
            f"{name:<12} {m['rate']:>9.1f} {m['wall']:>7.1f} {m['user']:>7.1f} {m['sys']:>7.1f} "
            f"{m['sys'] / m['user']:>8.2f} {m['cpu_ms_per_patch']:>8.1f} "
            f"{m['faults']:>10,.0f} {m['peak_mb']:>8.0f} "
            f"{'reference' if name == 'old' else 'identical' if same[name] else 'DIFFER':>10}   ({rates})"
        )
    old = medians["old"]
    ratios = {
        name: {
            "speed": m["rate"] / old["rate"],
            "wall": old["wall"] / m["wall"],
            "peak_memory": m["peak_mb"] / old["peak_mb"],
            "sys_per_user": m["sys"] / m["user"],
            "cpu_time": (old["user"] + old["sys"]) / (m["user"] + m["sys"]),
        }
        for name, m in medians.items()
        if name != "old"
    }
    for name, r in ratios.items():
        print(
            f"{name} / old: speed x{r['speed']:.2f} (stage patches/s), x{r['wall']:.2f} (process wall), "
            f"x{r['cpu_time']:.2f} less CPU time (user + sys), peak memory x{r['peak_memory']:.2f}, "
            f"kernel time {100 * r['sys_per_user']:.0f}% of user"
        )
    if args.json:
        data = {
            "magnification": args.magnification,
            "patches": patches,
            "repeats": args.repeats,
            "threads": args.threads,
            "load": [min(loads), max(loads)],
            "runs": results,
            "medians": medians,
            "ratios": ratios,
            "identical": same,
        }
        write_json_atomic(args.json, data)


if __name__ == "__main__":
    main()
