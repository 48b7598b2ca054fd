"""The demo cohort's tables: latent factors, labels, survival, omics and gene sets.

Two independent standard-normal latent factors per patient drive everything:
- `tumour`: diagnosis (invasive vs indolent), grade, hazard up, the `tumour` gene group, and on the
  slides the tumour nests and their nuclei;
- `microenvironment`: diagnosis (hot vs cold), hazard down, the `microenvironment` gene group, and
  on the slides the lymphocytes.
Each table is written with fixed number formats, so one seed gives byte-identical files.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from histo.io import write_text_atomic

# explicit class orders (alphabetical order agrees, so a label encoder that sorts gets the same codes)
DIAGNOSES = ("indolent_cold", "indolent_hot", "invasive_cold", "invasive_hot")
GRADES = ("G1", "G2", "G3")
GENE_GROUPS = {"tumour": "TUM", "microenvironment": "ENV"}
NOISE_PREFIX = "BKG"

# survival: Weibull proportional hazards, times in months
WEIBULL_SHAPE = 1.3
MEDIAN_MONTHS = 36.0  # median survival at average factors
HAZARD_TUMOUR, HAZARD_MICRO = 0.8, -0.5  # log-hazard per unit factor
FOLLOW_UP_MONTHS = 180.0  # administrative censoring: the study ends after 15 years

# random streams: one per purpose, so changing one table's parameters leaves the others alone
STREAM_LATENTS, STREAM_LABELS, STREAM_SURVIVAL, STREAM_GENES, STREAM_EXPRESSION = 1, 2, 3, 4, 5
STREAM_SLIDES, STREAM_TEXTURES = 6, 7


def stream(seed: int, *keys: int) -> np.random.Generator:
    """An independent generator for (seed, *keys); any int seed, negative ones included."""
    return np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFFFFFFFFFF, *keys]))


@dataclass(frozen=True)
class CohortSpec:
    patients: int
    slides_per_patient: int
    genes_per_group: int
    noise_genes: int
    censoring: float  # target share of censored patients


@dataclass(frozen=True)
class Cohort:
    patient_ids: list[str]
    slide_ids: list[list[str]]  # per patient
    tumour: np.ndarray  # [P] latent factors
    microenvironment: np.ndarray
    diagnosis: list[str]
    grade: list[str]
    time: np.ndarray  # months, > 0
    event: np.ndarray  # 1 = death observed, 0 = censored
    genes: list[str]
    expression: np.ndarray  # [P, G] log2-scale expression
    gene_sets: dict[str, list[str]]

    @property
    def slides(self) -> list[tuple[int, int, str]]:
        """(patient index, slide index, slide id) of every slide."""
        return [(p, s, sid) for p, ids in enumerate(self.slide_ids) for s, sid in enumerate(ids)]


def make_cohort(spec: CohortSpec, seed: int) -> Cohort:
    n = spec.patients
    width = max(4, len(str(n)))
    patient_ids = [f"SYN-{i + 1:0{width}d}" for i in range(n)]
    slide_ids = [[f"{pid}-{s + 1}" for s in range(spec.slides_per_patient)] for pid in patient_ids]
    latents = stream(seed, STREAM_LATENTS).standard_normal((2, n))
    tumour, micro = latents[0], latents[1]
    diagnosis, grade = _labels(tumour, micro, stream(seed, STREAM_LABELS))
    time, event = _survival(tumour, micro, spec.censoring, stream(seed, STREAM_SURVIVAL))
    genes, expression, gene_sets = _omics(tumour, micro, spec, seed)
    return Cohort(
        patient_ids, slide_ids, tumour, micro, diagnosis, grade, time, event, genes, expression, gene_sets
    )


def _labels(tumour: np.ndarray, micro: np.ndarray, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """Diagnosis: the quadrant of the (noisy) factors; grade: the noisy tumour factor in three bands."""
    seen_t = tumour + rng.normal(0, 0.35, tumour.shape)
    seen_m = micro + rng.normal(0, 0.35, micro.shape)
    diagnosis = [DIAGNOSES[2 * int(t > 0) + int(m > 0)] for t, m in zip(seen_t, seen_m, strict=True)]
    graded = tumour + rng.normal(0, 0.5, tumour.shape)
    grade = [GRADES[int(np.searchsorted([-0.6, 0.6], g))] for g in graded]
    return diagnosis, grade


def _survival(
    tumour: np.ndarray, micro: np.ndarray, censoring: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Weibull event times from a proportional hazard, censored by exponential drop-out and study end.

    The drop-out rate is solved so the expected censored share equals `censoring` (where the study
    end alone does not censor more), so the observed share is close to it on any cohort size.
    """
    k = WEIBULL_SHAPE
    scale = MEDIAN_MONTHS / math.log(2) ** (1 / k)
    risk = HAZARD_TUMOUR * tumour + HAZARD_MICRO * micro
    u = rng.random(tumour.shape)
    death = scale * (-np.log1p(-u)) ** (1 / k) * np.exp(-risk / k)
    rate = _dropout_rate(death, censoring)
    dropout = rng.exponential(1.0, tumour.shape) / rate if rate > 0 else np.full(tumour.shape, np.inf)
    follow_up = np.minimum(dropout, FOLLOW_UP_MONTHS)
    event = (death <= follow_up).astype(np.int64)
    time = np.maximum(np.round(np.minimum(death, follow_up), 2), 0.1)
    return time, event


def _dropout_rate(death: np.ndarray, target: float) -> float:
    """Exponential drop-out rate whose expected censored share over `death` is `target` (bisection)."""
    ended = death > FOLLOW_UP_MONTHS

    def censored(rate: float) -> float:
        return float(np.mean(np.where(ended, 1.0, -np.expm1(-rate * death))))

    if censored(0.0) >= target:
        return 0.0
    low, high = 0.0, 1.0
    while censored(high) < target and high < 1e6:
        high *= 2
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if censored(mid) < target else (low, mid)
    return (low + high) / 2


SHAPES: list[Callable[[np.ndarray], np.ndarray]] = [
    lambda x: x,  # linear
    lambda x: np.logaddexp(0.0, 1.5 * x) / 1.5 - 0.55,  # switched on above a threshold
    lambda x: 1.2 * np.tanh(0.8 * x),  # saturating
]


def _omics(
    tumour: np.ndarray, micro: np.ndarray, spec: CohortSpec, seed: int
) -> tuple[list[str], np.ndarray, dict[str, list[str]]]:
    """log2-scale expression: each group's genes follow their factor; the BKG genes are noise only.

    Gene parameters (baseline, loading, response shape, noise) come from their own stream, so they
    are the same for any number of patients.
    """
    params, noise = stream(seed, STREAM_GENES), stream(seed, STREAM_EXPRESSION)
    n, g = len(tumour), spec.genes_per_group
    columns: list[np.ndarray] = []
    genes: list[str] = []
    gene_sets: dict[str, list[str]] = {}
    for (group, prefix), factor in zip(GENE_GROUPS.items(), (tumour, micro), strict=True):
        names = [f"{prefix}{i + 1:03d}" for i in range(g)]
        base = params.uniform(4.0, 11.0, g)
        loading = params.uniform(0.5, 1.5, g) * np.where(params.random(g) < 0.25, -1.0, 1.0)
        shape = params.integers(0, len(SHAPES), g)
        sd = params.uniform(0.35, 0.8, g)
        response = np.stack([SHAPES[s](factor) for s in shape], axis=1)  # [n, g]
        columns.append(base + loading * response + sd * noise.standard_normal((n, g)))
        genes += names
        gene_sets[group] = names
    base = params.uniform(2.0, 12.0, spec.noise_genes)
    sd = params.uniform(0.3, 1.0, spec.noise_genes)
    columns.append(base + sd * noise.standard_normal((n, spec.noise_genes)))
    genes += [f"{NOISE_PREFIX}{i + 1:03d}" for i in range(spec.noise_genes)]
    expression = np.round(np.clip(np.concatenate(columns, axis=1), 0.0, None), 4)
    return genes, expression, gene_sets


def _csv(header: list[str], rows: list[list[str]]) -> str:
    return "".join(",".join(row) + "\n" for row in [header, *rows])


def write_tables(cohort: Cohort, out_dir: Path) -> dict[str, Path]:
    """cohort.csv, omics.csv, genesets.gmt, latents.csv (each atomically); returns name -> path."""
    paths = {
        "cohort": out_dir / "cohort.csv",
        "omics": out_dir / "omics.csv",
        "genesets": out_dir / "genesets.gmt",
        "latents": out_dir / "latents.csv",
    }
    rows = []
    for p, _, slide_id in cohort.slides:
        label = [cohort.diagnosis[p], cohort.grade[p], f"{cohort.time[p]:.2f}", str(int(cohort.event[p]))]
        rows.append([cohort.patient_ids[p], slide_id, *label])
    write_text_atomic(
        paths["cohort"], _csv(["patient_id", "slide_id", "diagnosis", "grade", "time", "event"], rows)
    )

    rows = [
        [pid, *(f"{v:.4f}" for v in values)]
        for pid, values in zip(cohort.patient_ids, cohort.expression, strict=True)
    ]
    write_text_atomic(paths["omics"], _csv(["patient_id", *cohort.genes], rows))

    about = {
        "tumour": "synthetic genes driven by the tumour latent factor",
        "microenvironment": "synthetic genes driven by the microenvironment latent factor",
    }
    gmt = "".join("\t".join([name, about[name], *genes]) + "\n" for name, genes in cohort.gene_sets.items())
    write_text_atomic(paths["genesets"], gmt)

    rows = [
        [pid, f"{t:.6f}", f"{m:.6f}"]
        for pid, t, m in zip(cohort.patient_ids, cohort.tumour, cohort.microenvironment, strict=True)
    ]
    write_text_atomic(paths["latents"], _csv(["patient_id", "tumour", "microenvironment"], rows))
    return paths
