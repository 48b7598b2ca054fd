"""Where extraction's kernel time went: the old engine (whole batch per forward pass, glibc's default
malloc, the network as packaged) against the default one (32-patch forward passes under
`tuned_malloc`, the lean network), in one run.

Each measurement is a fresh process running `Engine.run` end to end (reading, decoding, resizing,
normalising, inference, writing the HDF5 bag) on the real cmu-1-small-region.svs, its 117 patches of
224 px repeated to --patches, with `efficientnet_lite0` at the stage's default batch of 64. Three
engines alternate so that all see the same load: old, new, and the tuned malloc with whole-batch
forward passes (why the slices: its heap holds the large activations). The script prints median
patches/s and the ratio, the process's user and kernel (sys) CPU seconds during the run (`getrusage`,
which other jobs on the machine do not change), its minor page faults and peak resident memory, and
whether the features are identical.

    python benchmarks/extraction_allocator.py --patches 512 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from extraction import SLIDE, coords_file

ENGINES = {
    "old": {"env": {"HISTO_MALLOC_TUNING": "0", "HISTO_LEAN_MODULES": "0"}, "model_batch": "batch"},
    "new": {"env": {}, "model_batch": "default"},
    "tuned, whole batch": {"env": {}, "model_batch": "batch"},  # why the slices: memory
}


def child(args: argparse.Namespace) -> None:
    """One end-to-end run in this process; prints a JSON line of its measurements."""
    import h5py
    import torch

    from histo.manager import get_plugins
    from histo.plugins.extractors.coords import read_grid
    from histo.plugins.extractors.engine import Engine
    from histo.plugins.extractors.patches import PatchJob, SlideSource
    from histo.plugins.extractors.sink import FileSink

    registry = get_plugins()
    extractor = registry.registry("feature_extractors").build("efficientnet_lite0", {})
    reader = registry.registry("slide_readers").build("openslide", {})
    folder = Path(args.child)
    job = PatchJob(SlideSource(SLIDE, reader), read_grid(folder / "coords.h5", "20x"))
    model_batch = args.batch_size if args.model_batch == "batch" else None
    engine = Engine(extractor, extractor.build(), batch_size=args.batch_size, model_batch=model_batch)
    target = folder / f"{args.name.replace(' ', '_').replace(',', '')}.h5"
    before, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    sink = FileSink([job], [target], feature_dim=extractor.output_dim, attrs={})
    for _ in engine.run([job], sink):
        pass
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF)
    with h5py.File(target, "r") as f:
        n = len(f["features"])
    print(
        json.dumps(
            {
                "rate": n / seconds,
                "user": after.ru_utime - before.ru_utime,
                "sys": after.ru_stime - before.ru_stime,
                "faults": after.ru_minflt - before.ru_minflt,
                "peak_mb": after.ru_maxrss / 1024,
                "threads": torch.get_num_threads(),
                "workers": engine.workers_for(n),
            }
        )
    )


def run_one(name: str, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    spec = ENGINES[name]
    command = [sys.executable, __file__, "--child", str(folder), "--name", name]
    command += ["--batch-size", str(args.batch_size), "--model-batch", str(spec["model_batch"])]
    env = {**os.environ, **spec["env"]}  # type: ignore[dict-item]
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--patches", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    parser.add_argument("--model-batch", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if not SLIDE.is_file():
        raise SystemExit(f"{SLIDE} is missing (the shared data folder beside the checkout)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        coords_file(folder, args.patches)
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in ENGINES}
        loads = [os.getloadavg()[0]]
        for _ in range(args.repeats):
            for name in ENGINES:
                results[name].append(run_one(name, folder, args))
            loads.append(os.getloadavg()[0])
        import h5py

        features = {}
        for name in ENGINES:
            with h5py.File(folder / f"{name.replace(' ', '_').replace(',', '')}.h5", "r") as f:
                features[name] = np.asarray(f["features"][()])
    same = all(np.array_equal(features["old"], f) for f in features.values())
    diff = max(float(np.abs(features["old"] - f).max()) for f in features.values())
    print(
        f"# efficientnet_lite0, {args.patches} patches, batch {args.batch_size}, {args.repeats} repeats, "
        f"{os.cpu_count()} CPUs, load average {min(loads):.1f}-{max(loads):.1f}"
    )
    header = f"{'engine':<18} {'patches/s':>10} {'user s':>7} {'sys s':>7} {'sys/user':>8}"
    print(f"{header} {'faults':>10} {'peak MB':>8}")
    medians: dict[str, dict[str, float]] = {}
    for name, rows in results.items():
        keys = ("rate", "user", "sys", "faults", "peak_mb")
        m = {key: statistics.median(r[key] for r in rows) for key in keys}
        medians[name] = m
        rates = ", ".join(f"{r['rate']:.1f}" for r in rows)
        print(
            f"{name:<18} {m['rate']:>10.1f} {m['user']:>7.1f} {m['sys']:>7.1f} {m['sys'] / m['user']:>8.2f}"
            f" {m['faults']:>10,.0f} {m['peak_mb']:>8.0f}   (rates {rates})"
        )
    old, new = medians["old"], medians["new"]
    print(
        f"new / old: speed x{new['rate'] / old['rate']:.2f}, "
        f"peak memory x{new['peak_mb'] / old['peak_mb']:.2f}; "
        f"features of all three {'identical' if same else f'differ (max {diff:.1e})'}"
    )


if __name__ == "__main__":
    main()
