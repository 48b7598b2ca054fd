"""Benchmark of the DPC-kNN token aggregation on whole-slide-sized bags: exact against fast, one run.

Each measurement runs in a fresh process, so that its peak memory and its CPU time are its own:
- the reference-style O(N^2) cdist formulation against the chunked exact one, on sizes the former
  can handle, and the dense method's memory and time extrapolated to the large bag;
- agreement of the fast (approximate, inverted-file) search with exact DPC-kNN (identical centres,
  adjusted Rand index of the token assignments, at each K) on bags where exact is affordable: synthetic
  bags of `--agreement-sizes` tokens and the real patch-feature bags given with `--features`;
- on one bag of `--n` tokens: exact DPC-kNN (unless skipped: minutes at 100,000) and the fast search
  at each `probe`, next to the agreement of exact with itself on slightly perturbed tokens (how stable
  the clustering is anyway);
- the whole aggregator module (LayerNorm, scores, clustering, merge) with its default settings,
  forward and backward, and the whole `dmf_student`'s inference on a bag of `--n` 1024-d patches.
Every row has wall seconds, the process's user and kernel CPU seconds (getrusage) and its peak memory.
Synthetic tokens are LayerNorm'd draws from a Gaussian mixture with uneven component sizes and spreads
(patch features of a slide cluster by tissue type); real bags are LayerNorm'd too, as the aggregator
normalises its input before clustering.

    python benchmarks/token_aggregation.py --quick --json out.json   # < 6 min on an idle 2-core CPU
    python benchmarks/token_aggregation.py                            # full: exact at N = 100,000 too
    python benchmarks/token_aggregation.py --quick --features runs/x/stages/extract/features/20x/*.h5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import queue as queue_module
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

PERTURBATION = 1e-3  # noise (per feature, tokens have unit variance) of the stability reference


def make_bag(n: int, dim: int, seed: int = 0, noise: float = 0.0) -> Any:
    """n LayerNorm'd tokens from a 24-component Gaussian mixture with uneven sizes and spreads."""
    import torch

    g = torch.Generator().manual_seed(seed)
    components = 24
    centres = torch.randn(components, dim, generator=g) * 1.5
    spread = 0.5 + torch.rand(components, generator=g)
    share = _dirichlet(components, g)
    which = torch.multinomial(share, n, replacement=True, generator=g)
    x = centres[which] + spread[which, None] * torch.randn(n, dim, generator=g)
    if noise:
        x = x + noise * torch.randn(n, dim, generator=torch.Generator().manual_seed(seed + 1))
    return torch.nn.functional.layer_norm(x, (dim,))


def _dirichlet(components: int, generator: Any) -> Any:
    """Uneven component shares: normalised Gamma(2) draws (a Dirichlet(2) sample) from `generator`."""
    import torch

    gamma = -torch.log(torch.rand(components, 2, generator=generator)).sum(1)  # Gamma(2, 1)
    return gamma / gamma.sum()


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def load_bag(job: dict[str, Any]) -> Any:
    """The job's tokens: a synthetic bag, or the LayerNorm'd `features` of a feature file."""
    import torch

    if "path" not in job:
        return make_bag(job["n"], job["dim"], noise=job.get("noise", 0.0))
    import h5py

    with h5py.File(job["path"], "r") as handle:
        x = torch.from_numpy(handle["features"][:]).float()
    return torch.nn.functional.layer_norm(x, (x.shape[1],))


def _cpu_seconds() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def _run(job: dict[str, Any], queue: Any) -> None:
    import torch

    from histo.plugins.method.configs import DpcKnnConfig
    from histo.plugins.method.knn import dpc_knn, dpc_knn_approximate, dpc_knn_dense

    torch.set_num_threads(job["threads"])
    k, chunk = job["tokens"], job["chunk"]
    x = load_bag(job) if job["method"] != "student" else None
    methods: dict[str, Callable[[], Any]] = {
        "exact": lambda: dpc_knn(x, k, 5, chunk),
        "fast": lambda: dpc_knn_approximate(x, k, 5, chunk, None, job["probe"], 0),
        "dense": lambda: dpc_knn_dense(x, k, 5),
    }
    if job["method"] == "module":
        from histo.plugins.method.aggregators import DpcKnnMerge

        torch.manual_seed(0)
        module = DpcKnnMerge(x.shape[1], DpcKnnConfig(tokens=k))  # the default settings
        tokens = x.unsqueeze(0).requires_grad_(True)
        mask = torch.ones(1, x.shape[0], dtype=torch.bool)

        def forward_backward() -> tuple[Any, Any]:
            out = module(tokens, mask)
            out["tokens"].square().sum().backward()
            return torch.zeros(0, dtype=torch.long), out["assignment"][0]

        methods["module"] = forward_backward
    student: dict[str, Any] = {}
    if job["method"] == "student":
        from paper_models import large_bag

        def inference() -> tuple[Any, Any]:
            student.update(large_bag(job["n"], job["threads"]))
            return torch.zeros(0, dtype=torch.long), None

        methods["student"] = inference
    base = _status_kib("VmRSS")
    with contextlib.suppress(OSError):  # else VmHWM is the lifetime peak: an upper bound
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    user, system = _cpu_seconds()
    began = time.perf_counter()
    centres, _ = methods[job["method"]]()
    seconds = time.perf_counter() - began
    user_after, system_after = _cpu_seconds()
    peak_mib = max(_status_kib("VmHWM") - base, 0) / 1024
    result = {**job, "n": job.get("n") or (x.shape[0] if x is not None else 0), "seconds": seconds}
    result.update(user_s=user_after - user, sys_s=system_after - system, peak_mib=peak_mib)
    if student:  # the student's own numbers: the forward pass alone, and its aggregator's share
        result.update(seconds=student["seconds"], aggregator_seconds=student["aggregator_seconds"])
    queue.put({**result, "centres": centres.tolist()})


def measure(job: dict[str, Any]) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=_run, args=(job, queue))
    process.start()
    while True:  # a child that dies (out of memory, a bad file) must not leave us waiting forever
        try:
            result = queue.get(timeout=5)
            break
        except queue_module.Empty:
            if not process.is_alive():
                raise SystemExit(
                    f"the {job['method']} measurement of {job.get('path', job.get('n'))} failed "
                    f"(exit code {process.exitcode}); its error is printed above"
                ) from None
    process.join()
    return result


def check_feature_file(path: Path) -> None:
    """A clear error before any measurement: the file exists and holds a 2-d `features` dataset."""
    import h5py

    if not path.is_file():
        raise SystemExit(
            f"--features: {path} is not a file (make one with recipes/dense_patch_features.yaml)"
        )
    with h5py.File(path, "r") as handle:
        features = handle.get("features")
        if features is None or len(features.shape) != 2 or features.shape[0] < 2:
            raise SystemExit(f"--features: {path} has no 2-d `features` dataset of patches x dims")


def adjusted_rand(a: np.ndarray, b: np.ndarray) -> float:
    """Adjusted Rand index of two labelings (1: identical partitions, about 0: chance)."""
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    table = np.zeros((ia.max() + 1, ib.max() + 1), dtype=np.int64)
    np.add.at(table, (ia, ib), 1)

    def pairs(v: np.ndarray) -> float:
        return float((v * (v - 1) // 2).sum())

    index, rows, cols = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    expected = rows * cols / (a.size * (a.size - 1) / 2)
    maximum = (rows + cols) / 2
    return 1.0 if maximum == expected else (index - expected) / (maximum - expected)


class Agreement:
    """Compares clusterings of one bag at each K by their centres (assignments recomputed here)."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.x = load_bag(job)
        self.chunk = job["chunk"]

    def assignment(self, centres: list[int], k: int) -> np.ndarray:
        import torch

        from histo.plugins.method.knn import assign_to_centres

        return assign_to_centres(self.x, torch.tensor(centres[:k]), self.chunk).numpy()

    def __call__(self, reference: list[int], other: list[int], k: int) -> tuple[float, float]:
        same = len(set(reference[:k]) & set(other[:k])) / k
        return same, adjusted_rand(self.assignment(reference, k), self.assignment(other, k))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100_000, help="tokens in the large bag")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--tokens", type=int, nargs="+", default=[2, 8], help="K values")
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--probes", type=int, nargs="+", default=[16], help="probe values on the large bag")
    parser.add_argument("--dense-sizes", type=int, nargs="*", default=[2500, 5000, 10000])
    parser.add_argument(
        "--agreement-sizes", type=int, nargs="*", default=[20000, 50000], help="synthetic bags, exact vs fast"
    )
    parser.add_argument("--features", type=Path, nargs="*", default=[], help="real feature .h5 files")
    parser.add_argument("--skip-exact", action="store_true", help="no exact run on the large bag")
    parser.add_argument("--skip-student", action="store_true", help="no whole-student inference")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="dense sizes 2,500 and 5,000, agreement at 10,000 and 20,000, no exact on the large bag",
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.quick:
        args.dense_sizes, args.agreement_sizes, args.skip_exact = [2500, 5000], [10000, 20000], True
    for path in args.features:
        check_feature_file(path)

    common = {"dim": args.dim, "chunk": args.chunk, "threads": args.threads, "probe": 16}
    top = max(args.tokens)
    rows: list[dict[str, Any]] = []

    def report(result: dict[str, Any], extra: str = "") -> None:
        rows.append({**result, "note": extra})
        probe = result["probe"] if result["method"] == "fast" else "-"
        print(
            f"{result['method']:>7}  N={result['n']:>7,}  probe={probe:>3}  "
            f"{result['seconds']:8.2f} s (user {result['user_s']:7.2f}, sys {result['sys_s']:5.2f})  "
            f"peak +{result['peak_mib']:7.1f} MiB  {extra}",
            flush=True,
        )

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(
        f"# {os.cpu_count()} CPUs, {args.threads} threads, load average {load[0]:.1f} {load[1]:.1f} "
        f"{load[2]:.1f}, D={args.dim}"
    )
    print(f"# reference-style dense cdist vs chunked exact (K={top})")
    largest: dict[str, Any] | None = None
    for n in args.dense_sizes:
        dense = measure({**common, "method": "dense", "n": n, "tokens": top})
        exact = measure({**common, "method": "exact", "n": n, "tokens": top})
        report(dense)
        same = "identical" if dense["centres"] == exact["centres"] else "DIFFERENT"
        report(
            exact,
            f"x{exact['seconds'] / dense['seconds']:.2f} time, x{exact['peak_mib'] / dense['peak_mib']:.3f} "
            f"memory of dense; centres {same}",
        )
        largest = dense
    if largest:
        scale = (args.n / largest["n"]) ** 2
        print(
            f"# dense extrapolated to N={args.n:,} (x{scale:,.0f} of N={largest['n']:,}, both grow as N^2): "
            f"{largest['peak_mib'] * scale / 1024:,.0f} GiB, {largest['seconds'] * scale:,.0f} s"
        )

    bags: list[dict[str, Any]] = [{"n": n} for n in args.agreement_sizes]
    bags += [{"path": str(path), "bag": path.stem} for path in args.features]
    if bags:
        print(f"# exact vs fast (probe 16) where exact is affordable: agreement at K = {args.tokens}")
    for bag in bags:
        job = {**common, **bag, "tokens": top}
        exact = measure({**job, "method": "exact"})
        fast = measure({**job, "method": "fast"})
        scores = [Agreement(job)(exact["centres"], fast["centres"], k) for k in args.tokens]
        label = f"{bag['bag']}: " if "bag" in bag else ""
        report(exact, label + "exact")
        ratio = exact["seconds"] / fast["seconds"]
        report(fast, f"{label}exact / fast time x{ratio:.1f}; " + _describe(args.tokens, scores))

    print(f"# one bag of N={args.n:,}")
    large = {**common, "n": args.n, "tokens": top}
    reference = None
    if not args.skip_exact:
        agree = Agreement(large)
        reference = measure({**large, "method": "exact"})
        report(reference)
        perturbed = measure({**large, "method": "exact", "noise": PERTURBATION})
        scores = [agree(reference["centres"], perturbed["centres"], k) for k in args.tokens]
        report(perturbed, "exact on tokens + N(0, 1e-3) noise: " + _describe(args.tokens, scores))
    for probe in args.probes:
        fast = measure({**large, "method": "fast", "probe": probe})
        extra = "fast"
        if reference is not None:
            scores = [agree(reference["centres"], fast["centres"], k) for k in args.tokens]
            extra = f"x{reference['seconds'] / fast['seconds']:.1f} faster than exact; " + _describe(
                args.tokens, scores
            )
        report(fast, extra)
    module = measure({**large, "method": "module", "tokens": 2})
    report(module, "aggregator module (default settings, K=2), forward + backward")
    if not args.skip_student:
        student = measure({**large, "method": "student", "tokens": 2})
        report(
            student,
            f"dmf_student inference (default aggregator), 1024-d patches; "
            f"{student['aggregator_seconds']:.2f} s in the aggregator",
        )
    if args.json:
        args.json.write_text(json.dumps({"load_average": load, "rows": rows}, indent=1))


def _describe(ks: list[int], scores: list[tuple[float, float]]) -> str:
    pairs = zip(ks, scores, strict=True)
    return "; ".join(f"K={k}: centres {same:.2f} same, ARI {ari:.3f}" for k, (same, ari) in pairs)


if __name__ == "__main__":
    main()
