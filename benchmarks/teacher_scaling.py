"""The `dmf` teacher's cost per patch from 2,500 to 100,000 patches per view, against an earlier commit's
teacher in the same run.

What is timed: the `dmf` teacher, `preset: default` unless `--preset reference` (one magnification,
1024-d features, 128-d model, 4 classes, its two SNNs) on one bag (batch 1) of N patches on a lattice
that the tissue covers at ~45% (as `paper_models.py`'s large bag), per training step (forward + backward
of the cross-entropy) and per inference pass (eval, inference mode). Each (N, code) pair runs in a fresh
child process, baseline and current alternating, so that its peak memory (VmHWM, above the process before
the first step) is its own. Training steps run back to back, then inference passes (as `fit` and
`predict` run them), each kind after its warm-up (untimed steps until one faults in fewer than 1,000
pages, at most 5: the heap's growth over a fit's first steps is not its steady state): the median of
`--repeats` steps (2 above 25,000
patches; at least 50,000 patches' worth up to 25,000, e.g. 20 steps of a 2,500-patch bag, whose ~25 ms
passes are the noisiest figures), with the process's own user and kernel CPU time per step (getrusage)
beside the wall time. The current code runs its steps under `histo.plugins.training.heap.model_heap()`,
as the trainer's `fit` and `predict` do; `--glibc-row` adds a row per size for the current code under
glibc's own malloc settings (`HISTO_MALLOC_TUNING=0`), which shows what that setting trades (kernel
time against peak memory).

The baseline is `plugins/paper/` at `--baseline` (default: the last commit before the teacher's scaling
work), read with `git archive` from this checkout into a temporary folder and imported as its own
package; nothing else changes between the two. Before timing, both teachers get the same weights and
their eval-mode logits are compared (they must agree to float tolerance).

    python benchmarks/teacher_scaling.py                          # torch's default threads
    python benchmarks/teacher_scaling.py --threads 1 --json /tmp/teacher_scaling.json
    python benchmarks/teacher_scaling.py --no-baseline --sizes 2500,100000
    python benchmarks/teacher_scaling.py --threads 1 --glibc-row --json /tmp/teacher_scaling_t1.json
    python benchmarks/teacher_scaling.py --rounds 3 --json /tmp/teacher_scaling.json   # medians of 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

BASELINE = "b77a4f0bff501c3c4f6cf004219290656558676a"  # before the teacher's scaling work
SIZES = (2_500, 10_000, 25_000, 50_000, 100_000)
PACKAGE = "histo_paper_baseline"
WARM_UPS = 5  # untimed steps at most, per kind of step
SETTLED_FAULTS = 1_000  # a step that faults in fewer pages (4 MB) leaves the heap as it found it
SMALL_BAG_WORK = 50_000  # patches timed at least, per step kind, on a bag of up to 25,000 patches
VARIANTS = ("baseline", "current", "current-glibc")  # current-glibc: HISTO_MALLOC_TUNING=0
HERE = Path(__file__).resolve().parent


def extract_baseline(commit: str, into: Path) -> Path:
    """plugins/paper/ at `commit` as the package `histo_paper_baseline` under `into`."""
    archive = subprocess.run(
        ["git", "-C", str(HERE.parent), "archive", "--format=tar", commit, "plugins/paper"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    target = into / PACKAGE
    (into / "plugins" / "paper").rename(target)
    return target


def teacher_module(variant: str) -> Any:
    import importlib

    name = PACKAGE if variant == "baseline" else "histo.plugins.paper"
    return importlib.import_module(f"{name}.teacher"), importlib.import_module(f"{name}.configs")


def build_teacher(variant: str) -> Any:
    import torch
    from paper_models import CLASSES, FEATURES, GENES

    from histo.interfaces import ModelDims

    teacher, configs = teacher_module(variant)
    torch.manual_seed(0)
    dims = ModelDims(FEATURES, GENES, CLASSES, ("20x",))
    # the preset reaches the child processes through their environment (main sets it from --preset)
    preset = os.environ.get("TEACHER_SCALING_PRESET", "default")
    return teacher.DmfTeacher(dims, configs.DmfConfig.model_validate({"preset": preset}))


def bag(patches: int, seed: int = 0) -> dict[str, Any]:
    import torch
    from paper_models import FEATURES, GENES, grid_coords

    g = torch.Generator().manual_seed(seed)
    side = int((patches * 2.2) ** 0.5)  # tissue covers ~45% of the bounding box
    return {
        "features": {"20x": torch.randn(1, patches, FEATURES, generator=g)},
        "mask": {"20x": torch.ones(1, patches, dtype=torch.bool)},
        "coords": {"20x": grid_coords(patches, side, seed)[None]},
        "omics": {name: torch.randn(1, n, generator=g) for name, n in GENES.items()},
        "target": torch.tensor([1]),
    }


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (not Linux?)")


def measured(fn: Any) -> dict[str, float]:
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    fn()
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    return {"wall": wall, "user": after.ru_utime - before.ru_utime, "sys": after.ru_stime - before.ru_stime}


def warm_up(step: Any) -> int:
    """Untimed steps until one page-faults fewer than SETTLED_FAULTS pages (at most WARM_UPS); returns how
    many ran. A large bag's heap grows over a fit's first steps (four at 100,000 patches, each new page
    faulted in at ~60 us on this VM: 1-1.5 s a step) and then holds; the timed steps are the steady
    state of a fit's hundreds. glibc's own settings (the baseline) map and unmap every large tensor, so
    they never settle and take all WARM_UPS."""
    taken = 0
    while taken < WARM_UPS:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        step()
        taken += 1
        if resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before < SETTLED_FAULTS:
            break
    return taken


def child(variant: str, patches: int, repeats: int, threads: int | None) -> dict[str, Any]:
    """One code variant at one bag size, in this (fresh) process."""
    import contextlib
    import functools

    import torch
    from paper_models import infer, train_step

    from histo.plugins.training.heap import model_heap

    if threads:
        torch.set_num_threads(threads)
    model, batch = build_teacher(variant), bag(patches)
    before = peak_rss_mb()
    runs: dict[str, list[dict[str, float]]] = {"train": [], "infer": []}
    # the trainer's fit (and the predict passes it runs) hold model_heap() for the whole training
    with model_heap() if variant == "current" else contextlib.nullcontext():
        # each kind back to back, after one warm-up, as fit runs its steps and predict its passes: a pass
        # timed right after a training step ran ~15% slower at 2,500 patches (every part alike: the
        # caches the step left), which is not what either loop pays
        warm_ups = {}
        for kind, step in (("train", train_step), ("infer", infer)):
            warm_ups[kind] = warm_up(functools.partial(step, model, batch))
            runs[kind] = [measured(functools.partial(step, model, batch)) for _ in range(repeats)]
    result: dict[str, Any] = {"variant": variant, "patches": patches, "threads": torch.get_num_threads()}
    for kind, rows in runs.items():
        result[kind] = {key: statistics.median(r[key] for r in rows) for key in ("wall", "user", "sys")}
    result["peak_mb"], result["above_start_mb"] = peak_rss_mb(), peak_rss_mb() - before
    result["warm_ups"] = warm_ups
    return result


def same_logits(sizes: list[int]) -> list[dict[str, Any]]:
    """Eval-mode logits and patch attention of both teachers with the same weights."""
    import torch

    checks = []
    for patches in sizes:
        current, baseline = build_teacher("current"), build_teacher("baseline")
        baseline.load_state_dict(current.state_dict())
        batch = bag(patches, seed=1)
        outs = []
        for model in (current, baseline):
            model.eval()
            with torch.inference_mode():
                outs.append(model(batch))
        checks.append(
            {
                "patches": patches,
                "logits_max_abs_diff": float((outs[0]["logits"] - outs[1]["logits"]).abs().max()),
                "attention_max_abs_diff": float(
                    (outs[0]["attention"]["20x"] - outs[1]["attention"]["20x"]).abs().max()
                ),
            }
        )
    return checks


def repeats_for(patches: int, repeats: int) -> int:
    """Timed steps at one size: on bags up to 25,000 patches at least SMALL_BAG_WORK patches' worth, so a
    2,500-patch bag's median is taken over 20 passes of ~25 ms, not 3 (its per-patch figure is the
    spread's numerator and the noisiest); above 25,000 at most 2."""
    if patches > 25_000:
        return min(repeats, 2)
    return max(repeats, -(-SMALL_BAG_WORK // patches))


def run_child(
    variant: str, patches: int, args: argparse.Namespace, baseline_dir: Path | None
) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", variant, "--sizes", str(patches)]
    command += ["--repeats", str(repeats_for(patches, args.repeats))]
    if args.threads:
        command += ["--threads", str(args.threads)]
    env = dict(os.environ)
    if variant == "current-glibc":
        env["HISTO_MALLOC_TUNING"] = "0"  # model_heap() does nothing: glibc's own thresholds
    if baseline_dir is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(baseline_dir), env.get("PYTHONPATH")]))
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def median_over_rounds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One child's result with each figure the median over the rounds' children."""
    merged = dict(runs[0], rounds=len(runs))
    for kind in ("train", "infer"):
        merged[kind] = {key: statistics.median(r[kind][key] for r in runs) for key in ("wall", "user", "sys")}
    for key in ("peak_mb", "above_start_mb"):
        merged[key] = statistics.median(r[key] for r in runs)
    return merged


def report(results: list[dict[str, Any]], checks: list[dict[str, Any]]) -> None:
    print(
        "\n| patches | code | train s | user s | sys s | train us/patch (wall, cpu) "
        "| infer s | user s | sys s | infer us/patch (wall, cpu) | peak MB (above start) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        n, cells = r["patches"], []
        for kind in ("train", "infer"):
            k = r[kind]
            cells.append(
                f"{k['wall']:.2f} | {k['user']:.2f} | {k['sys']:.2f} "
                f"| {k['wall'] / n * 1e6:.1f}, {(k['user'] + k['sys']) / n * 1e6:.1f}"
            )
        print(
            f"| {n:,} | {r['variant']} | {cells[0]} | {cells[1]} "
            f"| {r['peak_mb']:,.0f} ({r['above_start_mb']:,.0f}) |"
        )
    print("\nper-patch cost, largest / smallest over the sizes (flat = 1.0):")
    for variant in VARIANTS:
        rows = [r for r in results if r["variant"] == variant]
        if not rows:
            continue
        for kind in ("train", "infer"):
            wall = [r[kind]["wall"] / r["patches"] for r in rows]
            cpu = [(r[kind]["user"] + r[kind]["sys"]) / r["patches"] for r in rows]
            spread = f"wall x{max(wall) / min(wall):.2f}, cpu x{max(cpu) / min(cpu):.2f}"
            print(f"  {variant:13s} {kind}: {spread}")
    print("\ncurrent / baseline (wall), per size:")
    for n in sorted({r["patches"] for r in results}):
        pair = {r["variant"]: r for r in results if r["patches"] == n}
        if "baseline" in pair and "current" in pair:
            ratios = [pair["current"][k]["wall"] / pair["baseline"][k]["wall"] for k in ("train", "infer")]
            print(f"  {n:>7,}: train x{ratios[0]:.2f}, infer x{ratios[1]:.2f}")
    for c in checks:
        print(
            f"eval logits at {c['patches']:,} patches, max |current - baseline|: "
            f"{c['logits_max_abs_diff']:.2e} (patch attention {c['attention_max_abs_diff']:.2e})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="patches per bag, comma-separated")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed steps per size (at most 2 above 25,000)"
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every (size, code) child this many times, round-robin; each figure is the median over "
        "the rounds (kernel time at large bags varies between runs on a shared machine)",
    )
    parser.add_argument("--baseline", default=BASELINE, help="commit whose plugins/paper/ is the baseline")
    parser.add_argument("--no-baseline", action="store_true", help="time the current code only")
    parser.add_argument(
        "--preset",
        choices=["default", "reference"],
        default="default",
        help="which dmf preset both teachers are built with (default: histo's variant, `preset: default`)",
    )
    parser.add_argument(
        "--glibc-row",
        action="store_true",
        help="also time the current code under glibc's own malloc settings (HISTO_MALLOC_TUNING=0)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.child:  # a child inherits its parent's preset through the environment
        os.environ["TEACHER_SCALING_PRESET"] = args.preset
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.child:
        print(json.dumps(child(args.child, sizes[0], args.repeats, args.threads)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        baseline_dir = None
        if not args.no_baseline:
            extract_baseline(args.baseline, Path(tmp))
            baseline_dir = Path(tmp)
            sys.path.insert(0, tmp)
        uptime = Path("/proc/loadavg").read_text().split()[:3]
        print(f"load average before: {' '.join(uptime)}; baseline: {baseline_dir and args.baseline}")
        checks = [] if args.no_baseline else same_logits([2_500, 10_000])
        variants = ["current"] if args.no_baseline else ["baseline", "current"]
        variants += ["current-glibc"] if args.glibc_row else []
        rounds: dict[tuple[int, str], list[dict[str, Any]]] = {(n, v): [] for n in sizes for v in variants}
        for round_ in range(1, args.rounds + 1):
            for n, variant in rounds:
                rounds[n, variant].append(run_child(variant, n, args, baseline_dir))
                r = rounds[n, variant][-1]
                print(
                    f"{n:>7,} {variant:13s} train {r['train']['wall']:.2f} s, "
                    f"infer {r['infer']['wall']:.3f} s, peak {r['peak_mb']:,.0f} MB, warm-ups "
                    f"{r['warm_ups']['train']} + {r['warm_ups']['infer']} (round {round_})",
                    flush=True,
                )
    results = [median_over_rounds(runs) for runs in rounds.values()]
    report(results, checks)
    uptime = Path("/proc/loadavg").read_text().split()[:3]
    print(f"load average after: {' '.join(uptime)}")
    if args.json:
        payload = {
            "results": results,
            "per_round": [run for runs in rounds.values() for run in runs],
            "logit_checks": checks,
            "baseline": baseline_dir and args.baseline,
        }
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
