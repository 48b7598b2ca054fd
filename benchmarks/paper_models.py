"""Benchmark of the paper's models (`dmf` teacher, `dmf_student`) at the paper's configuration, against
the released code when a checkout of it is given.

Paper configuration: batch 4, bags of 2,500 patches of 1024-d features, 128-d model, 4 classes, one
magnification. Both histo presets are timed: the default (`separable` position bias, coords layout) and
`preset: reference` (the released model exactly, same weights -> same logits), per training step
(forward + backward of the task loss) and per inference batch (eval, inference mode); median of
`--repeats` after one warm-up, every model interleaved so that all see the same machine load. Beside
the times, the GFLOP of one step and one batch (matrix products and convolutions, counted by
torch.utils.flop_counter) show which comparisons are at equal work. Then, in a fresh process, student
inference on one bag of 100,000 patches (1024-d, real grid coordinates): seconds and peak memory.

    python benchmarks/paper_models.py                                  # ours vs the issue's figures
    python benchmarks/paper_models.py --reference /tmp/dml-ref --reference-path /tmp/refdeps
    python benchmarks/paper_models.py --device cuda ...    # on a GPU (timings synchronise the device)
    python benchmarks/paper_models.py --quick --reference /tmp/released --reference-path /tmp/refdeps \
        --threads 2 --json /tmp/paper_bench.json      # the docs' table: ~3 min on an idle 2-core CPU

Beside wall seconds it prints the process's CPU seconds (user + system, all threads) per step: on a
shared machine wall time includes waiting for a core, CPU time does not.

`--reference` is a checkout of github.com/helenypzhang/Disentangled-Multimodal-Learning (its
`models/` folder is imported; nothing of it is copied here); it needs `einops` (give a folder holding it
with `--reference-path`). Its teacher gets its two omics vectors from our SNNs (its MaxNet lives in a
module with heavy training-only imports); SNN time is negligible next to the rest.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

# the figures for the released code on this 2-core CPU (seconds)
QUOTED = {"teacher": {"train": 15.0, "infer": 5.3}, "student": {"train": 6.8, "infer": 2.7}}
BATCH, PATCHES, FEATURES, CLASSES = 4, 2500, 1024, 4
GENES = {"tumour": 59, "microenvironment": 361}


# ---- inputs -----------------------------------------------------------------------------------------
def grid_coords(n: int, side: int, seed: int) -> Any:
    """n distinct cells of a side x side lattice (tissue with holes), level-0 pixels at a 256-px stride."""
    import torch

    cells = torch.randperm(side * side, generator=torch.Generator().manual_seed(seed))[:n]
    return torch.stack([cells % side, cells // side], dim=1).float() * 256


def paper_batch(seed: int = 0) -> dict[str, Any]:
    import torch

    g = torch.Generator().manual_seed(seed)
    return {
        "features": {"10x": torch.randn(BATCH, PATCHES, FEATURES, generator=g)},
        "mask": {"10x": torch.ones(BATCH, PATCHES, dtype=torch.bool)},
        "coords": {"10x": torch.stack([grid_coords(PATCHES, 80, seed + b) for b in range(BATCH)])},
        "omics": {name: torch.randn(BATCH, n, generator=g) for name, n in GENES.items()},
        "target": torch.randint(0, CLASSES, (BATCH,), generator=g),
    }


# ---- models -----------------------------------------------------------------------------------------
def use_plugins() -> str:
    """Install a plugin manager holding the paper's models and, when present, the dpc_knn aggregator.
    Returns the aggregator the student uses."""
    from histo.manager import Plugins, set_plugins

    plugins = Plugins(load_entry_points=False, env={})
    for module, name in (("histo.plugins.paper", "paper"), ("histo.plugins.method", "method")):
        if name == "paper" and "dmf" in plugins.registry("fusion_strategies"):
            continue
        if name == "method" and "dpc_knn" in plugins.registry("token_aggregators"):
            continue
        with contextlib.suppress(ImportError):
            plugins.register(importlib.import_module(module), name)
    set_plugins(plugins)
    if "dpc_knn" not in plugins.registry("token_aggregators"):
        raise SystemExit("the dpc_knn token aggregator (histo.plugins.method) is not installed")
    return "dpc_knn"


def our_teacher(**params: Any) -> Any:
    from histo.interfaces import ModelDims
    from histo.plugins.paper.configs import DmfConfig
    from histo.plugins.paper.teacher import DmfTeacher

    config = DmfConfig.model_validate({"preset": "default", **params})  # histo's variant unless told
    return DmfTeacher(ModelDims(FEATURES, GENES, CLASSES, ("10x",)), config)


def our_student(
    aggregator: dict[str, Any], features: int = FEATURES, view: str = "10x", **params: Any
) -> Any:
    from histo.interfaces import ModelDims
    from histo.plugins.paper.configs import DmfStudentConfig
    from histo.plugins.paper.student import DmfStudent

    config = DmfStudentConfig.model_validate({"preset": "default", "aggregator": aggregator, **params})
    return DmfStudent(ModelDims(features, {}, CLASSES, (view,)), config)


def load_reference(root: Path, extra_paths: list[str]) -> types.ModuleType:
    """The released code's models/Modules.py, imported in place (never copied)."""
    sys.path[:0] = extra_paths
    os.environ.setdefault("MPLBACKEND", "Agg")
    package = types.ModuleType("dml_reference")
    package.__path__ = [str(root / "models")]  # skip its __init__, which pulls in training-only modules
    sys.modules["dml_reference"] = package
    stub = types.ModuleType("nystrom_attention")  # imported by Modules.py, used only by layers we skip
    stub.NystromAttention = object  # type: ignore[attr-defined]
    sys.modules.setdefault("nystrom_attention", stub)
    return importlib.import_module("dml_reference.Modules")


def reference_models(modules: types.ModuleType) -> tuple[Any, Any]:
    import torch
    from torch import nn

    from histo.plugins.models.omics import SNN

    args = types.SimpleNamespace(path_dim=128, attn_dim=2, label_dim=CLASSES, path_cluster_num=0.0008)

    class Teacher(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.omics = nn.ModuleDict({g: SNN(n, [64, 48, 32], 128, 0.1) for g, n in GENES.items()})
            self.net = modules.TeacherNet(args)

        def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
            omics = [self.omics[g](batch["omics"][g]) for g in GENES]
            return {"logits": self.net(path=batch["features"]["10x"], omic_list=omics)[0]}

    class Student(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = modules.StudentNet(args)

        def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
            return {"logits": self.net(path=batch["features"]["10x"])[0]}

    torch.manual_seed(0)
    return Teacher(), Student()


# ---- timing -----------------------------------------------------------------------------------------
def train_step(model: Any, batch: dict[str, Any]) -> None:
    import torch
    import torch.nn.functional as F

    model.train()
    model.zero_grad(set_to_none=True)
    out = model(batch)
    views = out.get("view_logits") or {"all": out["logits"]}
    loss = torch.stack([F.cross_entropy(logits, batch["target"]) for logits in views.values()]).sum()
    if "aux_loss" in out:
        loss = loss + out["aux_loss"]
    loss.backward()


def infer(model: Any, batch: dict[str, Any]) -> None:
    import torch

    model.eval()
    with torch.inference_mode():
        model(batch)


def to_device(value: Any, device: str) -> Any:
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    return value.to(device) if hasattr(value, "to") else value


def synchronise() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(fn: Callable[[], None]) -> float:
    synchronise()
    start = time.perf_counter()
    fn()
    synchronise()
    return time.perf_counter() - start


def cpu_timed(fn: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, user + system CPU seconds of this process, all its threads)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF)
    wall = timed(fn)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def compare(
    models: dict[str, Any], batch: dict[str, Any], repeats: int
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Median wall seconds and median CPU seconds (user + sys) per train step and per inference batch
    of each model, runs interleaved. The warm-up run of each model counts its FLOPs."""
    runs: dict[str, dict[str, list[float]]] = {name: {"train": [], "infer": []} for name in models}
    cpu: dict[str, dict[str, list[float]]] = {name: {"train": [], "infer": []} for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            for kind, fn in (("train", train_step), ("infer", infer)):
                wall, used = cpu_timed(functools.partial(fn, model, batch))
                runs[name][kind].append(wall)
                cpu[name][kind].append(used)

    def median(r: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
        return {name: {k: statistics.median(v) for k, v in by.items()} for name, by in r.items()}

    return median(runs), median(cpu)


def step_flops(model: Any, batch: dict[str, Any]) -> dict[str, float]:
    """GFLOP of one training step and one inference batch: matrix products and convolutions, as
    torch.utils.flop_counter counts them (elementwise work is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    flops = {}
    for kind, fn in (("train", train_step), ("infer", infer)):
        counter = FlopCounterMode(display=False)
        with counter:
            fn(model, batch)
        flops[kind] = counter.get_total_flops() / 1e9
    return flops


def parameters(model: Any, skip: str = "") -> int:
    return sum(p.numel() for n, p in model.named_parameters() if not (skip and n.startswith(skip)))


# ---- the 100,000-patch bag (run in a child process, so that its peak memory is its own) ---------------
def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; unlike ru_maxrss it is not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (not Linux?)")


def large_bag(patches: int, threads: int | None, device: str = "cpu") -> dict[str, Any]:
    import torch

    if threads:
        torch.set_num_threads(threads)
    aggregator = use_plugins()
    model = our_student({"name": aggregator, "params": {"k": 5, "tokens": 2}}, view="20x")  # the default
    side = int((patches * 2.2) ** 0.5)  # tissue covers ~45% of the bounding box
    batch = {
        "features": {"20x": torch.randn(1, patches, FEATURES)},
        "mask": {"20x": torch.ones(1, patches, dtype=torch.bool)},
        "coords": {"20x": grid_coords(patches, side, 0)[None]},
    }
    model, batch = model.to(device), to_device(batch, device)
    model.eval()
    aggregator_seconds: list[float] = []  # the aggregator is timed apart: it is another component
    module = model.branches["20x"].aggregator
    module.register_forward_pre_hook(lambda *_: aggregator_seconds.append(-time.perf_counter()))
    module.register_forward_hook(lambda *_: aggregator_seconds.append(time.perf_counter()))
    before = peak_rss_mb()
    if device != "cpu":  # warm-up: CUDA context, kernels; then count only the forward pass
        infer(model, batch)
        aggregator_seconds.clear()
        torch.cuda.reset_peak_memory_stats()
    seconds = timed(lambda: infer(model, batch))
    peak = peak_rss_mb()
    gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if device != "cpu" else None
    return {
        "device": device,
        "gpu_peak_mb": gpu_mb,
        "patches": patches,
        "grid": f"{side}x{side}",
        "seconds": seconds,
        "aggregator_seconds": sum(aggregator_seconds),
        "peak_mb": peak,
        "before_mb": before,
    }


# ---- main -------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reference", type=Path, help="checkout of the released code (holds models/)")
    parser.add_argument("--reference-path", action="append", default=[], help="extra sys.path for its deps")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--quick", action="store_true", help="2 repeats, no 100,000-patch bag (~3 min on an idle 2-core CPU)"
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--large-patches", type=int, default=100_000)
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--cpb", action="store_true", help="also time our teacher with the reference's bias")
    parser.add_argument("--large-bag-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (models and inputs moved there)")
    args = parser.parse_args()

    if args.large_bag_child:
        print(json.dumps(large_bag(args.large_patches, args.threads, args.device)))
        return

    import torch

    if args.quick:
        args.repeats, args.skip_large = 2, True
    if args.threads:
        torch.set_num_threads(args.threads)
    aggregator = use_plugins()
    torch.manual_seed(0)
    knn = {"name": aggregator, "params": {"k": 5, "tokens": 2}}
    models: dict[str, Any] = {
        "teacher": our_teacher(),
        "teacher (reference)": our_teacher(preset="reference"),
        "student": our_student(knn),
        "student (reference)": our_student(knn, preset="reference"),
    }
    if args.cpb:
        models["teacher (cpb bias)"] = our_teacher(attention={"position_bias": "cpb"})
    counts = {name: parameters(model, skip="omics") for name, model in models.items()}
    if args.reference:
        ref_teacher, ref_student = reference_models(load_reference(args.reference, args.reference_path))
        models["reference teacher"], models["reference student"] = ref_teacher, ref_student
        counts["reference teacher"] = parameters(ref_teacher, skip="omics")  # omics: our SNN stand-ins
        counts["reference student"] = parameters(ref_student)
    models = {name: model.to(args.device) for name, model in models.items()}
    batch = to_device(paper_batch(), args.device)
    flops = {name: step_flops(model, batch) for name, model in models.items()}  # also the warm-up
    load_before = os.getloadavg()[0]
    results, cpu = compare(models, batch, args.repeats)
    load_after = os.getloadavg()[0]

    print(
        f"paper configuration: batch {BATCH} x {PATCHES} patches x {FEATURES}-d, 128-d model, "
        f"{CLASSES} classes"
    )
    where = torch.cuda.get_device_name() if args.device != "cpu" else f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}, load average {load_before:.1f} -> {load_after:.1f}")
    print(f"median of {args.repeats} interleaved runs; GFLOP = matrix products and convolutions")
    header = f"{'model':<22}{'params':>10}{'train GFLOP':>13}{'train s/step':>14}{'infer GFLOP':>13}"
    print(header + f"{'infer s/batch':>15}{'train CPU s':>13}{'infer CPU s':>13}")
    for name, r in results.items():
        f, c = flops[name], cpu[name]
        print(
            f"{name:<22}{counts[name]:>10,}{f['train']:>13.1f}{r['train']:>14.2f}{f['infer']:>13.1f}"
            f"{r['infer']:>15.2f}{c['train']:>13.2f}{c['infer']:>13.2f}"
        )
    print("CPU s = user + system time of this process (all threads) per step, median")
    for kind in ("teacher", "student"):
        if f"reference {kind}" in results:
            ref = results[f"reference {kind}"]
            label = "the released code measured in this run"
        else:
            ref = QUOTED[kind]
            label = "QUOTED figures (released code not measured in this run)"
        for name in (kind, f"{kind} (reference)"):
            ours = results[name]
            print(
                f"{name}: speed-up over {label}: {ref['train'] / ours['train']:.2f}x (train), "
                f"{ref['infer'] / ours['infer']:.2f}x (inference); target for the reference preset: 2x, 3x"
            )
    report: dict[str, Any] = {
        "results": results,
        "cpu_seconds": cpu,
        "repeats": args.repeats,
        "gflop": flops,
        "parameters": counts,
        "threads": torch.get_num_threads(),
        "load_average": [load_before, load_after],
    }
    report["device"] = args.device
    if not args.skip_large:
        child = [sys.executable, __file__, "--large-bag-child", "--large-patches", str(args.large_patches)]
        child += ["--device", args.device]
        if args.threads:
            child += ["--threads", str(args.threads)]
        run = subprocess.run(child, capture_output=True, text=True, check=True)
        large = json.loads(run.stdout.strip().splitlines()[-1])
        report["large_bag"] = large
        print(
            f"student inference, one bag of {large['patches']:,} patches ({large['grid']} grid): "
            f"{large['seconds']:.1f} s ({large['aggregator_seconds']:.1f} s of it in the dpc_knn "
            "aggregator), "
            f"peak RSS {large['peak_mb']:.0f} MB "
            f"({large['peak_mb'] - large['before_mb']:.0f} MB above the process before the forward pass, "
            "which held torch and the 400 MB input); target < 10 s, < 2 GB"
        )
        if large["gpu_peak_mb"] is not None:
            print(f"  on {args.device}: peak GPU memory allocated {large['gpu_peak_mb']:.0f} MB")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
