"""Patches per second of histo's extraction engine against a naive loop, measured in the same run.

Slide: the real cmu-1-small-region.svs (../shared/data/slides), 224 px patches at level 0 (0.499 µm/px)
on a grid with stride --stride; extractors: efficientnet_lite0 (real ImageNet weights) and handcrafted.

Baseline (CLAM's extract_features loop without DataLoader workers): one process opens the slide,
and for each batch reads every patch with read_region, resizes it with PIL, stacks, normalises and
calls the model. Ours: `Engine` with DataLoader reader workers (one slide handle each), uint8 batches,
normalisation on the device, inference_mode (bf16 + channels_last on CUDA). Both read the same pixels
and resize the same way, and the script checks that they return the same features. Each side is timed
--repeats times after one untimed warm-up pass (so the OS file cache is warm for both); best is kept.

usage: python benchmarks/extraction.py [--stride 224] [--batch-size 32] [--workers N] [--repeats 2]
                                       [--extractors efficientnet_lite0 handcrafted] [--max-patches N]
                                       [--handcrafted-size 224]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import openslide
import torch
from PIL import Image

from histo.manager import get_plugins
from histo.plugins.extractors.coords import read_grid
from histo.plugins.extractors.engine import Engine, default_num_workers
from histo.plugins.extractors.patches import PatchJob, SlideSource

ROOT = Path(__file__).resolve().parents[1]
SLIDE = ROOT.parent / "shared" / "data" / "slides" / "cmu-1-small-region.svs"
PATCH = 224


def coords_file(folder: Path, stride: int, max_patches: int | None) -> Path:
    """A coords file in the tile stage's format over the whole slide."""
    with openslide.OpenSlide(str(SLIDE)) as slide:
        width, height = slide.dimensions
    xs, ys = np.meshgrid(np.arange(0, width - PATCH + 1, stride), np.arange(0, height - PATCH + 1, stride))
    coords = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.int64)[:max_patches]
    path = folder / "coords.h5"
    attrs = {"slide_id": SLIDE.stem, "slide_path": str(SLIDE), "reader": "openslide", "read_level": 0}
    attrs |= {"read_size": PATCH, "patch_size": PATCH, "level0_width": width, "level0_height": height}
    with h5py.File(path, "w") as f:
        f.create_dataset("coords", data=coords)
        f.attrs.update(attrs)
    return path


def naive(
    extractor: Any, model: torch.nn.Module, coords: np.ndarray, batch_size: int, device: torch.device
) -> np.ndarray:
    """CLAM-style: per-patch read_region + PIL resize in the main process, per-batch model call."""
    size = extractor.input_size
    mean = torch.tensor(extractor.mean).view(1, 3, 1, 1)
    std = torch.tensor(extractor.std).view(1, 3, 1, 1)
    out = []
    with openslide.OpenSlide(str(SLIDE)) as slide:
        for start in range(0, len(coords), batch_size):
            images = []
            for x, y in coords[start : start + batch_size]:
                patch = slide.read_region((int(x), int(y)), 0, (PATCH, PATCH)).convert("RGB")
                if size != PATCH:
                    patch = patch.resize((size, size), Image.Resampling.BILINEAR)
                images.append(torch.from_numpy(np.array(patch)).permute(2, 0, 1).float() / 255)
            batch = ((torch.stack(images) - mean) / std).to(device)
            with torch.inference_mode():
                out.append(model(batch).float().cpu().numpy())
    return np.concatenate(out)


def best_time(fn: Callable[[], np.ndarray], repeats: int) -> tuple[float, np.ndarray]:
    result = fn()  # warm-up: page cache, lazy initialisation, first-call kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stride", type=int, default=PATCH, help="grid stride in level-0 pixels")
    parser.add_argument("--max-patches", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=default_num_workers(), help="reader workers for ours")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--extractors", nargs="+", default=["efficientnet_lite0", "handcrafted"])
    parser.add_argument(
        "--handcrafted-size",
        type=int,
        default=224,
        help="handcrafted input_size: small makes reading the bottleneck",
    )
    args = parser.parse_args()
    if not SLIDE.is_file():
        raise SystemExit(f"{SLIDE} is missing: the benchmark needs ../shared/data beside the checkout")

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, {os.cpu_count()} cores, torch {torch.__version__}, device {device}")
    registry = get_plugins()
    reader = registry.registry("slide_readers").build("openslide", {})
    with tempfile.TemporaryDirectory() as tmp:
        grid = read_grid(coords_file(Path(tmp), args.stride, args.max_patches), "20x")
        job = PatchJob(SlideSource(SLIDE, reader), grid)
        n = len(grid)
        print(f"{SLIDE.name}: {n} patches of {PATCH} px, batch {args.batch_size}, best of {args.repeats}\n")
        header = f"ours, {args.workers} workers"
        print(f"{'extractor':<20}{'naive p/s':>12}{'ours, 0 workers':>18}{header:>20}{'speed-up':>10}")
        for name in args.extractors:
            params = {"input_size": args.handcrafted_size} if name == "handcrafted" else {}
            extractor = registry.registry("feature_extractors").build(name, params)
            model = extractor.build().eval().to(device)

            def baseline(extractor: Any = extractor, model: torch.nn.Module = model) -> np.ndarray:
                return naive(extractor, model, grid.coords, args.batch_size, device)

            t_naive, f_naive = best_time(baseline, args.repeats)
            results = {}
            for workers in (0, args.workers):
                engine = Engine(
                    extractor, model, device=device, batch_size=args.batch_size, num_workers=workers
                )

                def ours(engine: Engine = engine) -> np.ndarray:
                    return engine.bags([job])[0].features

                results[workers] = best_time(ours, args.repeats)
            t_ours, f_ours = results[args.workers]
            same = np.allclose(f_naive, f_ours, rtol=1e-3, atol=1e-3) if device.type == "cpu" else "bf16"
            print(
                f"{name:<20}{n / t_naive:>12.1f}{n / results[0][0]:>18.1f}{n / t_ours:>20.1f}"
                f"{t_naive / t_ours:>9.2f}x   (same features: {same})"
            )


if __name__ == "__main__":
    main()
