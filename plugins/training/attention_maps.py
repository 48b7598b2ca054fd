"""Out-of-fold attention maps of a train stage, for heatmaps.

Each test patient's patch attention comes from the fold whose model never trained on it, so a map
shows where a model looks on a slide it had not seen. The model reads the patient's whole bag (no
`max_patches` subsampling), and the bag is cut back into its slides, so every slide gets its own file
`attention/<slide>.npz` in the heatmaps stage's format (see histo.plugins.report.heatmap):
    <mag>_coords                 [n, 2] level-0 patch coordinates
    <mag>_attention              [n] the model's patch attention (a teacher: the mean over subspaces)
    <mag>_attention_<subspace>   [n] a teacher's attention per gene group (`group_attention`)
Models without patch attention (mean pooling, omics only) leave no file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from histo.io import atomic_path, write_json_atomic
from histo.plugins.cohort.table import slide_key

from .collate import collate, to_device
from .dataset import PatientDataset
from .heap import model_heap


def whole_bags(dataset: PatientDataset) -> PatientDataset:
    """The same patients, targets and omics, with every patch of every bag."""
    return PatientDataset(
        dataset.patients,
        dataset.targets,
        slides=dataset.slides,
        features=dataset.features,
        omics=dataset.omics,
    )


def _maps(out: dict[str, Any], mag: str) -> dict[str, torch.Tensor]:
    """Name -> [N] weights of the one patient in `out` at magnification `mag`."""
    maps: dict[str, torch.Tensor] = {}
    attention = out.get("attention")
    if isinstance(attention, dict) and isinstance(attention.get(mag), torch.Tensor):
        maps["attention"] = attention[mag][0]
    groups = out.get("group_attention")
    if isinstance(groups, dict) and isinstance(groups.get(mag), dict):
        for group, weights in groups[mag].items():
            if isinstance(weights, torch.Tensor):
                maps[f"attention_{group}"] = weights[0]
    return {k: v for k, v in maps.items() if v.dim() == 1}


@torch.no_grad()
def slide_attention(
    model: nn.Module, dataset: PatientDataset, device: torch.device
) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """(slide id, arrays) for every slide of every patient of `dataset` whose model has attention."""
    features = dataset.features
    if features is None:
        return
    model.eval()
    whole = whole_bags(dataset)
    for index, patient in enumerate(whole.patients):
        with model_heap():  # a generator: the setting must not outlive a forward pass (heap.py)
            out = model(to_device(collate([whole[index]]), device))
        slides = whole.slides.get(patient, [])
        per_slide: dict[str, dict[str, np.ndarray]] = {s: {} for s in slides}
        for mag in features.magnifications:
            maps = {name: w.float().cpu().numpy() for name, w in _maps(out, mag).items()}
            if not maps:
                continue
            start = 0
            for slide in slides:
                _, coords = features.load(slide, mag)
                stop = start + len(coords)
                per_slide[slide][f"{mag}_coords"] = coords
                for name, weights in maps.items():
                    per_slide[slide][f"{mag}_{name}"] = weights[start:stop]
                start = stop
        for slide, arrays in per_slide.items():
            if arrays:
                yield slide_key(slide), arrays  # the id the tile stage gave it: no file extension


def write_attention(model: nn.Module, dataset: PatientDataset, folder: Path, device: torch.device) -> int:
    """Write `folder/<slide>.npz` for the test patients of one fold; returns how many slides."""
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for slide, arrays in slide_attention(model, dataset, device):
        with atomic_path(folder / f"{slide}.npz") as tmp, tmp.open("wb") as fh:
            np.savez_compressed(fh, **arrays)
        written += 1
    return written


def write_index(folder: Path) -> None:
    """`index.json`: the slides with a map, written once every fold has added its own."""
    if folder.is_dir():
        write_json_atomic(folder / "index.json", sorted(p.stem for p in folder.glob("*.npz")))
