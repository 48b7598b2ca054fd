"""The paper's method end to end: teacher (slides + RNA) -> student (slides) -> distilled student, on a
small generated cohort whose planted signal makes distillation worth something.

The cohort. Each patient has a tumour factor t and a microenvironment factor m (standard normal). The
label is 1[t + 0.5 m + 1.5 e > 0] with e standard normal, so about 30 % of the labels disagree with the
noise-free class 1[t + 0.5 m > 0]. The transcriptome shows t (8 `tumour` genes) and m (8
`microenvironment` genes) almost exactly; the slides show them too, but only in some patches (t in the
patches of a tumour region, m in the others) under patch noise. The teacher, which reads the RNA,
therefore knows P(label | t, m) for each training patient far better than its 0/1 label says (at seeds 2
and 5, its predictions on its own training patients have a Spearman correlation of 0.66-0.92 with t +
0.5 m, the labels 0.35-0.57): privileged information that soft targets and subspace features pass on to
a WSI-only student (Lopez-Paz et al. 2016, "Unifying distillation and privileged information").

The comparison. `student` and `distilled` are the same WSI-only model (`dmf_student`, DPC-kNN to K = 2
tokens) with the same schedule and the same folds; `distilled` adds `subspace_kd` from the frozen
teacher. The distillation weights are a = b = 1 rather than the paper's 0.01, which weighs the two terms
at 0.01 against the task loss's 1 (in the demo ablation, docs/ablation.md, it changed nothing
measurable). `resumed` checks the recipes' `init_from` path: it starts from the student's checkpoints
with a learning rate of 1e-9, so its test predictions must be the student's.

How robust. Folds of 24 test patients and training on 38 make every AUC noisy. Over recipe seeds 0-9 the
distilled student beat the undistilled one in 8 of 10 on histo's reported test AUC (mean gain +0.016;
seeds 1 and 9 lost 0.07 and 0.05) and in 8 of 10 on AUC against the noise-free class (mean gain +0.034),
both in 7 of 10; the teacher beat the student in all 10, with AUC 0.67-0.83 against the labels and
0.90-0.98 against the noise-free class. "Distilled > undistilled" is true on average, not for every
seed, so the test runs one fixed seed (5: gains +0.030 and +0.045, close to the means). Seeded CPU runs
repeat exactly, and the test pins torch to one thread so that they do here. A change that breaks
distillation (a wrong sign, a teacher that is not loaded, mismatched folds) would have to be lucky to
keep the comparison at this seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from histo.cli import main
from histo.io import read_json

SEED = 5
PATIENTS = 72
FEATURE_DIM = 16
SIGNAL_DIMS = 4  # feature dims 0-3 carry t in tumour patches, dims 4-7 carry m in the other patches
GRID = {"10x": (3, 512), "20x": (6, 256)}  # cells per side and level-0 stride: the 20x grid nests in 10x
LABEL_NOISE = 1.5


def make_cohort(root: Path, patients: int, seed: int) -> dict[str, Path]:
    """Feature bags (`bags/features/<mag>/<slide>.h5`), cohort.csv, rna.csv, the two gene lists, and
    truth.csv: each patient's noise-free class and factors, which no model is given."""
    import h5py

    rng = np.random.default_rng(seed)
    t = rng.normal(size=patients)
    m = rng.normal(size=patients)
    label = (t + 0.5 * m + LABEL_NOISE * rng.normal(size=patients) > 0).astype(int)
    ids = [f"P{i:03d}" for i in range(patients)]
    folder = root / "bags"
    rows = []
    for mag in GRID:
        (folder / "features" / mag).mkdir(parents=True, exist_ok=True)
    for i in range(patients):
        slide = f"S{i:03d}"
        region = rng.uniform(0, 1, size=2)  # centre of the tumour region, in slide units
        for mag, (side, stride) in GRID.items():
            ys, xs = np.mgrid[0:side, 0:side]
            cells = np.stack([xs.ravel(), ys.ravel()], axis=1)
            cells = cells[rng.uniform(size=len(cells)) > 0.15]  # tissue is not a full square
            tumour = np.linalg.norm((cells + 0.5) / side - region, axis=1) < 0.45
            features = rng.normal(size=(len(cells), FEATURE_DIM))
            features[tumour, :SIGNAL_DIMS] += t[i]
            features[~tumour, SIGNAL_DIMS : 2 * SIGNAL_DIMS] += m[i]
            with h5py.File(folder / "features" / mag / f"{slide}.h5", "w") as h5:
                h5["features"] = features.astype(np.float32)
                h5["coords"] = (cells * stride).astype(np.int64)  # a real grid: `layout: coords` uses it
        rows.append({"patient_id": ids[i], "slide_id": f"{slide}.svs", "label": ["low", "high"][label[i]]})
    cohort = root / "cohort.csv"
    pd.DataFrame(rows).to_csv(cohort, index=False)

    genes = {"tumour": [f"TUM{g}" for g in range(8)], "microenvironment": [f"ENV{g}" for g in range(8)]}
    loadings = rng.uniform(0.7, 1.3, size=16) * rng.choice([-1, 1], size=16)
    expression: dict[str, Any] = {"patient_id": ids}
    for g, gene in enumerate(genes["tumour"] + genes["microenvironment"]):
        factor = t if g < 8 else m
        expression[gene] = 6 + loadings[g] * factor + 0.2 * rng.normal(size=patients)
    for g in range(8):  # genes in no group: the teacher must not read them
        expression[f"BKG{g}"] = 6 + rng.normal(size=patients)
    rna = root / "rna.csv"
    pd.DataFrame(expression).to_csv(rna, index=False)
    lists = {}
    for name, members in genes.items():
        lists[name] = root / f"{name}.txt"
        lists[name].write_text("\n".join(members) + "\n")
    truth = root / "truth.csv"
    clean = np.where(t + 0.5 * m > 0, "high", "low")
    pd.DataFrame({"patient_id": ids, "clean": clean, "t": t, "m": m}).to_csv(truth, index=False)
    return {"bags": folder, "cohort": cohort, "rna": rna, "truth": truth, **lists}


# Small widths (16) and a small deformable lattice (8 x 8 offset map, 4 x 4 = 16 sampled keys) for bags
# of 7-36 patches; epochs are selected on validation loss, which ties less than AUC on 10 patients.
RECIPE = """\
seed: {seed}
stages:
  teacher:
    stage: train
    params:
      cohort: &cohort {{table: {cohort}, label_column: label}}
      omics:
        table: {rna}
        groups: {{lists: [{tumour}, {microenvironment}]}}
      features: &features {{folder: {bags}}}
      task: &task {{name: classification, params: {{column: label, classes: [low, high]}}}}
      model:
        fusion: {{name: dmf, params: {{preset: default, dim: 16, omics_hidden: [16],
                  consistency_weight: 100.0,
                  attention: &attention {{heads: 2, head_dim: 8, offset_groups: 2, offset_map_size: 8,
                                          offset_kernel: 2, offset_stride: 2, position_hidden: 8}}}}}}
      coordinator: confidence
      splits: &splits {{folds: 3, stratify: label}}
      training: &training
        {{epochs: 10, batch_size: 8, optimizer: {{lr: 0.003}}, early_stopping: {{metric: loss}},
         selection: {{protocol: holdout}}}}
  student:
    stage: train
    params: &student
      cohort: *cohort
      features: *features
      task: *task
      model:
        slide_encoder: {{name: dmf_student, params: {{preset: default, dim: 16, attention: *attention}}}}
      splits: *splits
      training: *training
  distilled:
    stage: train
    params:
      <<: *student
      teacher: teacher
      distiller: {{name: subspace_kd, params: {{alpha: 1.0, beta: 1.0, temperature: 2.0}}}}
  resumed:
    stage: train
    params:
      <<: *student
      init_from: student
      training: {{epochs: 1, batch_size: 8, optimizer: {{lr: 1.0e-9, weight_decay: 0.0}},
                 selection: {{protocol: holdout}}}}
"""


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Seeded runs repeat exactly only with the same thread count; and on a shared 2-core machine
    torch's default intra-op threads made these tiny models over 10x slower (measured)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random positive outranks a random negative (ties count half)."""
    ranks = pd.Series(scores).rank().to_numpy()
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def clean_auc(stage: Path, truth: pd.Series) -> float:
    """Mean over folds of the test AUC against the noise-free class, from the stage's predictions."""
    predictions = pd.read_csv(stage / "predictions.csv")
    values = []
    for _, fold in predictions.groupby("fold"):
        positive = (truth.loc[fold["patient_id"]] == "high").to_numpy()
        values.append(auc(fold["prob_high"].to_numpy(), positive))
    return float(np.mean(values))


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_teacher_learns_and_distillation_helps_the_student(tmp_path: Path) -> None:
    paths = make_cohort(tmp_path, PATIENTS, SEED)
    recipe = tmp_path / "method.yaml"
    recipe.write_text(RECIPE.format(seed=SEED, **paths))
    assert main(["run", str(recipe), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    stages = tmp_path / "run" / "stages"
    reported = {s: read_json(stages / s / "metrics.json")["summary"]["auc"]["mean"] for s in
                ("teacher", "student", "distilled")}  # fmt: skip
    truth = pd.read_csv(paths["truth"]).set_index("patient_id")["clean"]
    clean = {s: clean_auc(stages / s, truth) for s in reported}

    # the teacher learned the planted signal from the RNA despite the noisy labels
    assert clean["teacher"] > 0.85, clean
    assert reported["teacher"] > 0.65, reported
    assert reported["teacher"] > reported["student"], reported
    # distillation passed some of it on to the WSI-only student (see the docstring for how robust)
    assert reported["distilled"] > reported["student"], reported
    assert clean["distilled"] > clean["student"], clean

    # every stage was tested on the teacher's folds, and `init_from` starts from the student's weights
    for k in range(3):
        test = {s: set(pd.read_csv(stages / s / "splits" / f"splits_{k}.csv")["test"].dropna())
                for s in ("teacher", "student", "distilled", "resumed")}  # fmt: skip
        assert all(ids == test["teacher"] for ids in test.values())
    student = pd.read_csv(stages / "student" / "predictions.csv").set_index("patient_id")
    resumed = pd.read_csv(stages / "resumed" / "predictions.csv").set_index("patient_id")
    np.testing.assert_allclose(resumed.loc[student.index, "prob_high"], student["prob_high"], atol=1e-4)
    assert read_json(stages / "teacher" / "cohort_report.json")["omics"]["unused_genes"] == 8
