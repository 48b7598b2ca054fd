"""The GPU paths: bf16 extraction, training and distillation on CUDA, CUDA-trained models used on a CPU.

Skipped where torch sees no CUDA device (CI has none); run on a GPU machine with
`python -m pytest tests/test_cuda.py`. What they check is what a CPU run cannot: that autocast,
channels-last and pinned batches give the features fp32 gives (to bf16 precision), that every model
and loss of the method runs on the device, and that its checkpoints load and predict on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from histo.cli import main
from histo.io import read_json
from histo.plugins.extractors.patches import PatchJob

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def real_patch_job(slide: Path, folder: Path, n: int) -> PatchJob:
    """`n` patches of 224 px on a regular grid of the real slide, as the tile stage would list them."""
    import h5py
    import openslide

    from histo.plugins.extractors.coords import read_grid
    from histo.plugins.extractors.patches import SlideSource
    from histo.plugins.readers.openslide_reader import OpenSlideReader

    with openslide.OpenSlide(str(slide)) as handle:
        width, height = handle.dimensions
    xs, ys = np.meshgrid(np.arange(0, width - 224, 224), np.arange(0, height - 224, 224))
    coords = np.stack([xs.ravel(), ys.ravel()], axis=1)[:n]
    attrs = {"slide_id": slide.stem, "slide_path": str(slide), "read_level": 0, "read_size": 224}
    with h5py.File(folder / "coords.h5", "w") as f:
        f.create_dataset("coords", data=coords)
        f.attrs.update(attrs | {"patch_size": 224})
    return PatchJob(SlideSource(slide, OpenSlideReader()), read_grid(folder / "coords.h5", "20x"))


def test_bf16_channels_last_features_match_fp32_on_the_cpu(slides_dir: Path, tmp_path: Path) -> None:
    from histo.manager import get_plugins
    from histo.plugins.extractors.engine import Engine

    extractor = get_plugins().registry("feature_extractors").build("efficientnet_lite0", {})
    job = real_patch_job(slides_dir / "cmu-1-small-region.svs", tmp_path, 96)
    cpu = Engine(extractor, extractor.build(), batch_size=32, num_workers=0, precision="fp32")
    gpu = Engine(extractor, extractor.build(), device="cuda", batch_size=32, num_workers=2)
    assert gpu.autocast == torch.bfloat16 and gpu.channels_last and gpu.threads is None
    assert gpu.loader([job]).pin_memory
    (reference,) = cpu.bags([job])
    (bag,) = gpu.bags([job])
    assert bag.valid.all() and bag.features.dtype == np.float32
    # bf16 keeps 8 bits of mantissa through ~50 layers: on an H200 the features of 96 real patches had
    # cosine 0.988-0.9997 (mean 0.997) to fp32 on the CPU
    cosine = cosines(bag.features, reference.features)
    assert cosine.min() > 0.98 and cosine.mean() > 0.995, (cosine.min(), cosine.mean())
    fp32 = Engine(extractor, extractor.build(), device="cuda", batch_size=32, num_workers=0, precision="fp32")
    (full,) = fp32.bags([job])
    cosine = cosines(full.features, reference.features)  # TF32 convolutions where cuDNN allows them
    assert cosine.min() > 0.999, cosine.min()


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_extract_stage_on_cuda_records_what_it_ran(slides_dir: Path, tmp_path: Path) -> None:
    slide = slides_dir / "cmu-1-small-region.svs"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"""\
device: cuda
stages:
  tile:
    stage: tile
    params: {{slides: {slide}, magnifications: [10x, 20x], patch_size: 224, qc_thumbnails: false}}
  extract:
    stage: extract
    params: {{tiles: tile, extractor: efficientnet_lite0, batch_size: 64}}
"""
    )
    assert main(["run", str(recipe), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    stage = tmp_path / "run" / "stages" / "extract"
    record = read_json(stage / "extraction.json")
    assert record["precision_used"] == "bf16" and record["device"].startswith("cuda")
    from histo.plugins.features.read import read_bag

    for mag in ("10x", "20x"):
        bag = read_bag(stage / "features" / mag / "cmu-1-small-region.h5")
        assert bag.features.shape[1] == 1280 and np.isfinite(bag.features).all()


def test_dpc_knn_on_cuda_matches_the_cpu() -> None:
    from histo.plugins.method.knn import dpc_knn

    g = torch.Generator().manual_seed(0)
    centres = torch.randn(6, 32, generator=g) * 4
    tokens = centres[torch.randint(0, 6, (3000,), generator=g)] + torch.randn(3000, 32, generator=g)
    on_cpu = dpc_knn(tokens, 6, k=5)
    on_gpu = dpc_knn(tokens.cuda(), 6, k=5)
    for a, b in zip(on_cpu, on_gpu, strict=True):
        torch.testing.assert_close(a, b.cpu())


@pytest.mark.slow
def test_method_trains_on_cuda_and_its_checkpoints_run_on_the_cpu(tmp_path: Path) -> None:
    """Teacher (with gradient coordination and consistency) -> student -> distilled, on the GPU; then
    the distilled student's fold-0 checkpoint, loaded on the CPU, gives the logits it gives on the GPU."""
    import h5py
    from test_method_end_to_end import RECIPE, make_cohort

    from histo.plugins.training.collate import collate, to_device
    from histo.plugins.training.folds import load_model

    paths = make_cohort(tmp_path, 36, seed=5)
    recipe = tmp_path / "method.yaml"
    recipe.write_text("device: cuda\n" + RECIPE.format(seed=5, **paths).replace("epochs: 10", "epochs: 3"))
    assert main(["run", str(recipe), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    stages = tmp_path / "run" / "stages"
    for stage in ("teacher", "student", "distilled", "resumed"):
        metrics = read_json(stages / stage / "metrics.json")["summary"]
        assert np.isfinite(metrics["auc"]["mean"]), (stage, metrics)
        assert (stages / stage / "predictions.csv").exists()

    fold = stages / "distilled" / "folds" / "0"
    model, _ = load_model(fold, torch.device("cpu"))
    items = []
    for slide in pd.read_csv(fold / "test_predictions.csv")["patient_id"].str.replace("P", "S")[:4]:
        item = {"patient_id": slide, "target": np.zeros((), np.int64), "omics": {}}
        item["features"], item["coords"] = {}, {}
        for mag in ("10x", "20x"):
            with h5py.File(paths["bags"] / "features" / mag / f"{slide}.h5") as f:
                item["features"][mag], item["coords"][mag] = f["features"][()], f["coords"][()]
        items.append(item)
    batch = collate(items)
    with torch.no_grad():
        on_cpu = model(batch)["logits"]
        on_gpu = model.cuda()(to_device(batch, torch.device("cuda")))["logits"].cpu()
    torch.testing.assert_close(on_gpu, on_cpu, rtol=1e-3, atol=1e-3)
