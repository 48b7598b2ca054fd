"""The planted benchmark: cohorts in which each mechanism of the paper's method has a reason to matter.

Written straight as feature bags (what an extract stage writes), not as slides: painting and
extracting ten cohorts would cost hours, and a weight-free extractor would blur exactly the structure
planted here. docs/demo-data.md ("The planted benchmark") says what is planted and why.

Per seed, an independent cohort (its own patients, latent factors, noise) and one split of it into
train, validation and test: seed k is fold k of the imported splits, so every train stage that reads
them sees the same patients in the same roles. Two latent factors per patient, t and m ~ N(0, 1):
- label `planted` = `concordant` when t * m > 0, else `discordant` (then flipped with `label_noise`):
  the interaction of the factors; neither factor alone says anything about it;
- expression: `tumour` genes follow t, `microenvironment` genes follow m (each with its own noise, the
  microenvironment's larger, so the two subspaces differ in confidence); filler genes are noise;
- patch features at `signal_magnification` only: in a disc of patches (`informative_fraction` of the
  bag) the feature vector moves by `slide_signal` * (t u_t + m u_m) along two fixed directions; every
  other patch, and every patch of the other magnification, is pure N(0, I) noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from histo.io import write_text_atomic

from .cohort import stream
from .planted_config import PlantedConfig

LABELS = ("concordant", "discordant")
MAGNIFICATIONS = {"10x": 512, "20x": 256}  # level-0 stride of a patch (0.5 mpp at level 0)
STREAM_PLANTED_PARAMS, STREAM_PLANTED_COHORT = 11, 12


@dataclass
class PlantedCohort:
    patient_ids: list[str]
    seed_of: np.ndarray  # [P] which seed (fold) each patient belongs to
    role: list[str]  # train / val / test within its seed
    tumour: np.ndarray
    microenvironment: np.ndarray
    label: list[str]
    genes: list[str]
    expression: np.ndarray  # [P, G]
    gene_sets: dict[str, list[str]]
    bags: dict[str, list[np.ndarray]] = field(default_factory=dict)  # mag -> per patient [N, D]
    informative: list[np.ndarray] = field(default_factory=list)  # per patient [N] bool, signal patches
    coords: dict[str, np.ndarray] = field(default_factory=dict)  # mag -> [N, 2] level-0 (same per patient)


def _directions(spec: PlantedConfig, rng: np.random.Generator) -> np.ndarray:
    """Two orthonormal feature directions u_t, u_m (the same for every seed)."""
    q, _ = np.linalg.qr(rng.standard_normal((spec.feature_dim, 2)))
    return q.T  # [2, D]


def _coords(grid: int, stride: int, offset: int) -> np.ndarray:
    rows, cols = np.divmod(np.arange(grid * grid), grid)
    return np.stack([offset + cols * stride, offset + rows * stride], axis=1).astype(np.int64)


def _disc(grid: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """The informative patches: the `fraction` of the grid nearest a random centre (a contiguous blob)."""
    rows, cols = np.divmod(np.arange(grid * grid), grid)
    centre = rng.uniform(0, grid - 1, 2)
    distance = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 + rng.uniform(0, 1e-3, grid * grid)
    count = max(1, round(fraction * grid * grid))
    chosen = np.zeros(grid * grid, dtype=bool)
    chosen[np.argsort(distance)[:count]] = True
    return chosen


def _roles(labels: np.ndarray, spec: PlantedConfig, rng: np.random.Generator) -> list[str]:
    """train / val / test, stratified by label, within one seed's cohort."""
    roles = np.empty(len(labels), dtype=object)
    for value in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == value))
        n_test = round(spec.test_fraction * len(members))
        n_val = round(spec.val_fraction * (len(members) - n_test))
        roles[members[:n_test]] = "test"
        roles[members[n_test : n_test + n_val]] = "val"
        roles[members[n_test + n_val :]] = "train"
    return [str(r) for r in roles]


def make_planted(spec: PlantedConfig, seed: int) -> PlantedCohort:
    params = stream(seed, STREAM_PLANTED_PARAMS)
    directions = _directions(spec, params)
    g = spec.genes_per_group
    base = params.uniform(4.0, 11.0, (2, g))
    loading = params.uniform(0.6, 1.4, (2, g)) * np.where(params.random((2, g)) < 0.25, -1.0, 1.0)
    noise_base = params.uniform(2.0, 12.0, spec.noise_genes)
    gene_sets = {
        "tumour": [f"TUM{i + 1:03d}" for i in range(g)],
        "microenvironment": [f"ENV{i + 1:03d}" for i in range(g)],
    }
    genes = [
        *gene_sets["tumour"],
        *gene_sets["microenvironment"],
        *(f"BKG{i + 1:03d}" for i in range(spec.noise_genes)),
    ]
    side = spec.grid
    coords = {
        mag: _coords(side, stride, offset=(512 * side - stride * side) // 2)
        for mag, stride in MAGNIFICATIONS.items()
    }
    width = max(3, len(str(spec.patients_per_seed)))
    out = PlantedCohort(
        [],
        np.zeros(0, int),
        [],
        np.zeros(0),
        np.zeros(0),
        [],
        genes,
        np.zeros((0, len(genes))),
        gene_sets,
        {m: [] for m in MAGNIFICATIONS},
        [],
        coords,
    )
    seeds, tumours, micros, expressions = [], [], [], []
    for k in range(spec.seeds):
        rng = stream(seed, STREAM_PLANTED_COHORT, k)
        n = spec.patients_per_seed
        t, m = rng.standard_normal(n), rng.standard_normal(n)
        clean = (t * m <= 0).astype(int)  # 0 concordant, 1 discordant
        flip = rng.random(n) < spec.label_noise
        label = np.where(flip, 1 - clean, clean)
        sd = np.array([spec.tumour_rna_noise, spec.microenvironment_rna_noise])[:, None]
        groups = [
            base[i] + loading[i] * f[:, None] + sd[i] * rng.standard_normal((n, g))
            for i, f in enumerate((t, m))
        ]
        filler = noise_base + 0.5 * rng.standard_normal((n, spec.noise_genes))
        expressions.append(np.concatenate([*groups, filler], axis=1))
        for i in range(n):
            chosen = _disc(side, spec.informative_fraction, rng)
            for mag in MAGNIFICATIONS:
                bag = rng.standard_normal((side * side, spec.feature_dim))
                if mag == spec.signal_magnification:
                    bag[chosen] += spec.slide_signal * (t[i] * directions[0] + m[i] * directions[1])
                out.bags[mag].append(bag.astype(np.float32))
            out.informative.append(chosen)
        out.patient_ids += [f"PL{k:02d}-{i + 1:0{width}d}" for i in range(n)]
        out.role += _roles(label, spec, rng)
        out.label += [LABELS[v] for v in label]
        seeds.append(np.full(n, k))
        tumours.append(t)
        micros.append(m)
    out.seed_of = np.concatenate(seeds)
    out.tumour, out.microenvironment = np.concatenate(tumours), np.concatenate(micros)
    out.expression = np.round(np.clip(np.concatenate(expressions), 0.0, None), 4)
    return out


def _csv(header: list[str], rows: list[list[str]]) -> str:
    return "".join(",".join(row) + "\n" for row in [header, *rows])


def write_planted(cohort: PlantedCohort, out_dir: Path, attrs: dict[str, object]) -> dict[str, Path]:
    """cohort.csv, omics.csv, genesets.gmt, latents.csv, splits/splits_<k>.csv and
    features/<mag>/<patient>-1.h5 (histo bag layout), each written atomically."""
    from histo.plugins.features.writer import write_bag

    ids = cohort.patient_ids
    paths = {
        name: out_dir / f"{name}.{ext}"
        for name, ext in (("cohort", "csv"), ("omics", "csv"), ("genesets", "gmt"), ("latents", "csv"))
    }
    write_text_atomic(
        paths["cohort"],
        _csv(
            ["patient_id", "slide_id", "planted"],
            [[p, f"{p}-1", y] for p, y in zip(ids, cohort.label, strict=True)],
        ),
    )
    rows = [[p, *(f"{v:.4f}" for v in values)] for p, values in zip(ids, cohort.expression, strict=True)]
    write_text_atomic(paths["omics"], _csv(["patient_id", *cohort.genes], rows))
    write_text_atomic(
        paths["genesets"],
        "".join(
            "\t".join([name, f"planted genes following the {name} factor", *genes]) + "\n"
            for name, genes in cohort.gene_sets.items()
        ),
    )
    rows = [
        [p, str(int(k)), f"{t:.6f}", f"{m:.6f}"]
        for p, k, t, m in zip(ids, cohort.seed_of, cohort.tumour, cohort.microenvironment, strict=True)
    ]
    write_text_atomic(paths["latents"], _csv(["patient_id", "seed", "tumour", "microenvironment"], rows))
    for k in range(int(cohort.seed_of.max()) + 1 if len(ids) else 0):
        parts = {
            r: [
                p for p, s, role in zip(ids, cohort.seed_of, cohort.role, strict=True) if s == k and role == r
            ]
            for r in ("train", "val", "test")
        }
        length = max(len(v) for v in parts.values())
        table = [
            [parts[r][i] if i < len(parts[r]) else "" for r in ("train", "val", "test")]
            for i in range(length)
        ]
        path = out_dir / "splits" / f"splits_{k}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, _csv(["train", "val", "test"], table))
    for mag, bags in cohort.bags.items():
        folder = out_dir / "features" / mag
        folder.mkdir(parents=True, exist_ok=True)
        for pid, bag in zip(ids, bags, strict=True):
            target = folder / f"{pid}-1.h5"
            if not target.exists():  # atomic writes: an existing bag is complete
                write_bag(
                    target,
                    bag,
                    cohort.coords[mag],
                    {
                        **attrs,
                        "magnification": mag,
                        "patch_size": MAGNIFICATIONS[mag],
                        "extractor_hash": "planted",
                    },
                )
    return paths
