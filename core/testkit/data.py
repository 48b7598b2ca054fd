"""Synthetic inputs for plugin tests: model sizes, a padded batch as the trainer builds it, a tiny cohort
of feature bags a recipe can train on, and a small pyramidal slide file a reader opens."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..interfaces import ModelDims

DEFAULT_GROUPS: dict[str, int] = {"tumour": 6, "microenvironment": 5}
DEFAULT_MAGNIFICATIONS: tuple[str, ...] = ("10x", "20x")


def model_dims(
    feature_dim: int = 16,
    omics_groups: Mapping[str, int] | None = None,
    num_outputs: int = 3,
    magnifications: Sequence[str] = DEFAULT_MAGNIFICATIONS,
) -> ModelDims:
    """`ModelDims` as the train stage passes them to builders: two magnifications and two gene groups
    by default (pass `omics_groups={}` or `magnifications=()` for a run without that modality)."""
    groups = dict(DEFAULT_GROUPS if omics_groups is None else omics_groups)
    return ModelDims(
        feature_dim=feature_dim if magnifications else 0,
        omics_groups=groups,
        num_outputs=num_outputs,
        magnifications=tuple(magnifications),
    )


def _lattice(n: int, rng: np.random.Generator, stride: int) -> np.ndarray:
    """n distinct cells of a square lattice with holes, in level-0 pixels (as tiling writes them)."""
    width = max(1, math.ceil(math.sqrt(2 * n)))
    cells = rng.permutation(width * width)[:n]
    return np.stack([cells % width, cells // width], axis=1).astype(np.float32) * stride + 1000


def _target(task: str, num_outputs: int, rng: np.random.Generator) -> np.ndarray:
    if task == "survival":  # (bin, time, event), as the survival task encodes it
        return np.array([rng.integers(num_outputs), rng.uniform(1, 60), rng.integers(2)], dtype=np.float64)
    return np.asarray(rng.integers(num_outputs), dtype=np.int64)


def synthetic_items(
    dims: ModelDims,
    batch_size: int = 3,
    *,
    ragged: bool = True,
    seed: int = 0,
    patches: tuple[int, int] = (3, 12),
    task: Literal["classification", "survival"] = "classification",
) -> list[dict[str, Any]]:
    """One dataset item per patient (unpadded bags), the input of the trainer's collate."""
    rng = np.random.default_rng(seed)
    low, high = patches
    items = []
    for b in range(batch_size):
        features, coords = {}, {}
        for v, mag in enumerate(dims.magnifications):
            n = _bag_size(b, v, batch_size, low, high, rng) if ragged else high
            features[mag] = rng.normal(size=(n, dims.feature_dim)).astype(np.float32)
            coords[mag] = _lattice(n, rng, stride=256 * 2 ** (len(dims.magnifications) - 1 - v))
        omics = {g: rng.normal(size=genes).astype(np.float32) for g, genes in dims.omics_groups.items()}
        items.append(
            {
                "patient_id": f"P{b:03d}",
                "target": _target(task, dims.num_outputs, rng),
                "features": features,
                "coords": coords,
                "omics": omics,
            }
        )
    return items


def _bag_size(b: int, v: int, batch_size: int, low: int, high: int, rng: np.random.Generator) -> int:
    """The first bag is the longest and the last the shortest, so every other bag is padded."""
    if b == 0:
        return high
    if b == batch_size - 1:
        return low + v % 2
    return int(rng.integers(low, max(high, low + 1)))


def synthetic_batch(
    dims: ModelDims,
    batch_size: int = 3,
    *,
    ragged: bool = True,
    seed: int = 0,
    patches: tuple[int, int] = (3, 12),
    task: Literal["classification", "survival"] = "classification",
) -> dict[str, Any]:
    """A batch exactly as the trainer feeds it to a model (its own collate function builds it):

    "patient_id" [B] list of str, "target" [B] int64 (classification) or [B, 3] (survival: bin, time,
    event), "features" {mag: [B, N, D] float32}, "mask" {mag: [B, N] bool, True = real patch},
    "coords" {mag: [B, N, 2]} level-0 pixels, "omics" {group: [B, genes] float32}.
    With `ragged`, bags have different lengths (padded with zeros and masked), the first the longest.
    """
    from histo.plugins.training.collate import collate

    return collate(synthetic_items(dims, batch_size, ragged=ragged, seed=seed, patches=patches, task=task))


def sample_of(batch: Mapping[str, Any], index: int) -> dict[str, Any]:
    """Patient `index` of a batch alone, without the padding it had there (a batch of one)."""
    out: dict[str, Any] = {
        "patient_id": [batch["patient_id"][index]] if "patient_id" in batch else [],
        "features": {},
        "mask": {},
        "coords": {},
        "omics": {g: x[index : index + 1] for g, x in batch.get("omics", {}).items()},
    }
    if "target" in batch:
        out["target"] = batch["target"][index : index + 1]
    for mag, mask in batch.get("mask", {}).items():
        n = max(int(mask[index].sum()), 1)
        for key in ("features", "mask", "coords"):
            if mag in batch.get(key, {}):
                out[key][mag] = batch[key][mag][index : index + 1, :n]
    return out


def with_noisy_padding(batch: Mapping[str, Any], seed: int = 0, scale: float = 100.0) -> dict[str, Any]:
    """A copy of `batch` whose padded positions hold large random values instead of zeros: a model that
    honours the mask gives the same outputs for both."""
    import torch

    g = torch.Generator().manual_seed(seed)
    out = dict(batch)
    out["features"], out["coords"] = {}, {}
    for mag, mask in batch.get("mask", {}).items():
        pad = ~mask
        features = batch["features"][mag].clone()
        features[pad] = torch.randn(int(pad.sum()), features.shape[-1], generator=g) * scale
        out["features"][mag] = features
        if mag in batch.get("coords", {}):
            coords = batch["coords"][mag].clone()
            coords[pad] = torch.rand(int(pad.sum()), 2, generator=g) * 1e5
            out["coords"][mag] = coords
    return out


@dataclass(frozen=True)
class TinyCohort:
    """Files of a small synthetic cohort (see `tiny_cohort`) and a train recipe over them."""

    root: Path
    features: Path  # laid out like an extract stage's folder: features/<mag>/<slide>.h5
    cohort: Path  # CSV: patient_id, slide_id, diagnosis
    omics: Path  # CSV: patient_id, one column per gene
    groups: dict[str, list[str]] = field(default_factory=dict)  # gene group -> genes
    label_column: str = "diagnosis"
    classes: tuple[str, str] = ("benign", "tumour")

    def train_recipe(
        self,
        model: str,
        *,
        omics: bool = True,
        features: bool = True,
        task: str | None = None,
        epochs: int = 2,
        folds: int = 2,
        batch_size: int = 4,
        seed: int = 0,
        stage_id: str = "train",
    ) -> str:
        """YAML text of a one-stage recipe that trains `model` (the flow mapping of the train stage's
        `model:` key, e.g. "{slide_encoder: abmil}") on this cohort; `task` replaces the default
        (classification of `diagnosis`, benign vs tumour) with another flow mapping."""
        lines = [
            f"seed: {seed}",
            "stages:",
            f"  {stage_id}:",
            "    stage: train",
            "    params:",
            f"      cohort: {{table: '{self.cohort}', label_column: {self.label_column}}}",
        ]
        if features:
            lines.append(f"      features: {{folder: '{self.features}'}}")
        if omics:
            genes = ", ".join(f"{g}: [{', '.join(names)}]" for g, names in self.groups.items())
            lines.append(f"      omics: {{table: '{self.omics}', groups: {{genes: {{{genes}}}}}}}")
        classes = ", ".join(self.classes)
        default = f"{{name: classification, params: {{column: {self.label_column}, classes: [{classes}]}}}}"
        lines += [
            f"      task: {task or default}",
            f"      model: {model}",
            f"      splits: {{folds: {folds}, stratify: label}}",
            # one validation carve-out: a contract smoke run, not a model choice (docs/tasks.md)
            f"      training: {{epochs: {epochs}, batch_size: {batch_size},"
            " selection: {protocol: holdout}}",
        ]
        return "\n".join(lines) + "\n"


def tiny_cohort(
    path: Path,
    *,
    patients: int = 12,
    magnifications: Sequence[str] = DEFAULT_MAGNIFICATIONS,
    feature_dim: int = 8,
    genes_per_group: int = 3,
    signal: float = 1.5,
    seed: int = 0,
) -> TinyCohort:
    """Write a cohort of `patients` (half 'tumour', half 'benign'; every other one with two slides) under
    `path`: feature bags per slide and magnification in histo's own format, a cohort table and an
    expression table with two gene groups. The label shifts the features' mean and the first genes of
    each group by `signal`, so a model that learns anything beats chance."""
    import pandas as pd

    from histo.plugins.features.writer import write_bag

    rng = np.random.default_rng(seed)
    root = Path(path)
    folder = root / "bags"
    groups = {
        group: [f"{group[0].upper()}{i}" for i in range(genes_per_group)]
        for group in ("tumour", "microenvironment")
    }
    rows, expression = [], []
    for i in range(patients):
        label = i % 2
        for s in range(1 + i % 2):
            slide = f"S{i:03d}-{s}"
            for v, mag in enumerate(magnifications):
                n = int(rng.integers(4, 10)) * (v + 1)
                features = rng.normal(size=(n, feature_dim)) + label * signal
                coords = _lattice(n, rng, stride=256).astype(np.int64)
                write_bag(
                    folder / "features" / mag / f"{slide}.h5",
                    features.astype(np.float32),
                    coords,
                    {"extractor": "synthetic", "magnification": mag, "slide_id": slide},
                )
            rows.append(
                {
                    "patient_id": f"P{i:03d}",
                    "slide_id": f"{slide}.svs",
                    "diagnosis": ["benign", "tumour"][label],
                }
            )
        values = {}
        for genes in groups.values():
            for k, gene in enumerate(genes):
                values[gene] = rng.normal() + label * signal * (k == 0)
        expression.append({"patient_id": f"P{i:03d}", **values})
    root.mkdir(parents=True, exist_ok=True)
    cohort, omics = root / "cohort.csv", root / "omics.csv"
    pd.DataFrame(rows).to_csv(cohort, index=False)
    pd.DataFrame(expression).to_csv(omics, index=False)
    return TinyCohort(root, folder, cohort, omics, groups)


def small_slide(path: Path, *, size: tuple[int, int] = (1536, 1024), mpp: float = 0.5, seed: int = 0) -> Path:
    """Write a small pyramidal, tiled TIFF (OpenSlide's generic tiled TIFF, JPEG tiles, the pixel size in
    its resolution tags) with a few pink-purple tissue blobs on white glass; returns `path`.

    Readers open it (`openslide`, `image`); about a fifth of it is tissue, the rest background."""
    from PIL import Image, ImageDraw, ImageFilter

    from histo.plugins.synthetic.tiff import write_tiff

    rng = np.random.default_rng(seed)
    width, height = size
    image = Image.new("RGB", size, (242, 240, 245))
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        cx, cy = rng.uniform(0.25, 0.75) * width, rng.uniform(0.25, 0.75) * height
        rx, ry = rng.uniform(0.1, 0.2) * width, rng.uniform(0.1, 0.2) * height
        colour = (int(rng.integers(170, 215)), int(rng.integers(90, 140)), int(rng.integers(160, 200)))
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=colour)
    noise = rng.normal(0, 8, size=(height, width, 1))
    pixels = np.clip(np.asarray(image.filter(ImageFilter.GaussianBlur(2)), dtype=np.float64) + noise, 0, 255)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_tiff(path, Image.fromarray(pixels.astype(np.uint8)), mpp, 256, 90, "histo.testing small slide")
    return path
