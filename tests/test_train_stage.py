"""End-to-end runs of the train stage: omics only on the real TCGA-STAD tables, WSI only and
multi-modal on small generated bags, resume, and distillation from a teacher stage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from histo.cli import main
from histo.io import read_json


def run(tmp_path: Path, text: str, out: str = "run", *extra: str) -> int:
    recipe = tmp_path / f"{out}.yaml"
    recipe.write_text(text)
    return main(["run", str(recipe), "--out", str(tmp_path / out), "--quiet", *extra])


STAD = """\
stages:
  train:
    stage: train
    params:
      cohort:
        table: {data}/omics/tcga_stad/clinical.csv
        patient_column: case_id
        time_column: survival_months
        event_column: censorship
        event_is: censored
      omics:
        table: {data}/omics/tcga_stad/rna_xena.csv
        groups:
          gmt: {data}/genesets/h.all.v7.0.symbols.gmt
          select:
            tumour: [HALLMARK_E2F_TARGETS, HALLMARK_G2M_CHECKPOINT]
            microenvironment: [HALLMARK_INFLAMMATORY_RESPONSE]
      task: {{name: survival, params: {{bins: 4}}}}
      model: {{omics_encoder: {{name: snn, params: {{output_dim: 32}}}}}}
      splits: {{files: {data}/omics/tcga_stad/splits, stratify: event}}
      training: {{epochs: 2, batch_size: 64, selection: {{protocol: holdout}}}}
"""


@pytest.mark.slow
def test_omics_survival_on_tcga_stad(shared_data: Path, tmp_path: Path) -> None:
    from sksurv.metrics import concordance_index_censored

    assert run(tmp_path, STAD.format(data=shared_data)) == 0
    stage = tmp_path / "run" / "stages" / "train"
    metrics = read_json(stage / "metrics.json")
    assert len(metrics["folds"]) == 5
    predictions = pd.read_csv(stage / "predictions.csv")
    # every patient is predicted once, by the fold that held it out
    assert predictions["patient_id"].is_unique
    splits = [pd.read_csv(stage / "splits" / f"splits_{k}.csv") for k in range(5)]
    for k, split in enumerate(splits):
        fold_rows = predictions[predictions["fold"] == k]
        assert set(fold_rows["patient_id"]) == set(split["test"].dropna())
        assert not set(split["test"].dropna()) & set(split["train"].dropna())
        # the C-index histo reports is scikit-survival's on the same predictions
        expected = concordance_index_censored(
            fold_rows["event"].astype(bool).to_numpy(),
            fold_rows["time"].to_numpy(),
            fold_rows["risk"].to_numpy(),
        )[0]
        assert metrics["folds"][k]["test"]["c_index"] == pytest.approx(expected)
    failures = [json.loads(line) for line in (stage / "failures.jsonl").read_text().splitlines()]
    assert {"item": "TCGA-CD-A487", "kind": "omics"}.items() <= failures[0].items()
    assert (stage / "km_risk_groups.png").stat().st_size > 1000
    report = read_json(stage / "cohort_report.json")
    assert report["usable_patients"] == len(predictions)


def make_bags(tmp_path: Path, patients: int = 24, seed: int = 0) -> tuple[Path, Path, Path]:
    """Feature bags whose mean carries the label, an omics table carrying it too, and a cohort."""
    import h5py

    rng = np.random.default_rng(seed)
    folder = tmp_path / "bags"
    for mag in ("10x", "20x"):
        (folder / "features" / mag).mkdir(parents=True)
    rows, omics = [], []
    for i in range(patients):
        label = i % 2
        for s in range(1 + i % 2):
            slide = f"S{i:02d}-{s}"
            for mag, n in (("10x", 5 + i % 4), ("20x", 9 + i % 7)):
                features = rng.normal(size=(n, 8)) + label * 1.5
                with h5py.File(folder / "features" / mag / f"{slide}.h5", "w") as h5:
                    h5["features"] = features.astype(np.float32)
                    h5["coords"] = rng.integers(0, 5000, size=(n, 2))
            rows.append(
                {
                    "patient_id": f"P{i:02d}",
                    "slide_id": f"{slide}.svs",
                    "diagnosis": ["benign", "tumour"][label],
                }
            )
        omics.append(
            {"patient_id": f"P{i:02d}", **{f"G{g}": rng.normal() + label * (g < 3) for g in range(6)}}
        )
    cohort = tmp_path / "cohort.csv"
    pd.DataFrame(rows).to_csv(cohort, index=False)
    table = tmp_path / "omics.csv"
    pd.DataFrame(omics).to_csv(table, index=False)
    return folder, cohort, table


WSI = """\
seed: 3
stages:
  train:
    stage: train
    params:
      cohort: {{table: {cohort}, label_column: diagnosis}}
      features: {{folder: {bags}}}
      task: {{name: classification, params: {{column: diagnosis, classes: [benign, tumour]}}}}
      model: {{slide_encoder: {{name: abmil, params: {{hidden: 16, attention_dim: 8}}}}}}
      splits: {{folds: 3, stratify: label}}
      training: {{epochs: 6, batch_size: 4, optimizer: {{lr: 0.005}}, selection: {{protocol: holdout}}}}
"""


def test_wsi_classification_learns_planted_signal(tmp_path: Path) -> None:
    bags, cohort, _ = make_bags(tmp_path)
    assert run(tmp_path, WSI.format(cohort=cohort, bags=bags)) == 0
    stage = tmp_path / "run" / "stages" / "train"
    metrics = read_json(stage / "metrics.json")
    assert metrics["summary"]["auc"]["mean"] > 0.9
    predictions = pd.read_csv(stage / "predictions.csv")
    assert {"prob_benign", "prob_tumour", "target", "fold"} <= set(predictions.columns)
    assert (stage / "roc.png").exists() and (stage / "confusion.png").exists()
    for k in range(3):
        assert (stage / "folds" / str(k) / "best.pt").exists()


def test_rerun_is_identical_and_resumes_missing_folds(tmp_path: Path) -> None:
    bags, cohort, _ = make_bags(tmp_path)
    text = WSI.format(cohort=cohort, bags=bags)
    assert run(tmp_path, text, "a") == 0
    assert run(tmp_path, text, "b") == 0
    first = pd.read_csv(tmp_path / "a" / "stages" / "train" / "predictions.csv")
    second = pd.read_csv(tmp_path / "b" / "stages" / "train" / "predictions.csv")
    pd.testing.assert_frame_equal(first, second)  # seeded runs repeat exactly on CPU

    # simulate a run killed after fold 0: stage.json gone, folds 1-2 not finished
    stage = tmp_path / "a" / "stages" / "train"
    record = read_json(stage / "stage.json")
    (stage / "stage.json").unlink()
    (stage / "in_progress.json").write_text(json.dumps({"fingerprint": record["fingerprint"]}))
    for k in (1, 2):
        (stage / "folds" / str(k) / "metrics.json").unlink()
    kept = (stage / "folds" / "0" / "best.pt").stat().st_mtime_ns
    assert run(tmp_path, text, "a") == 0
    assert (stage / "folds" / "0" / "best.pt").stat().st_mtime_ns == kept
    pd.testing.assert_frame_equal(first, pd.read_csv(stage / "predictions.csv"))


def test_multimodal_concat_and_distillation(tmp_path: Path) -> None:
    bags, cohort, omics = make_bags(tmp_path)
    teacher = f"""\
seed: 5
stages:
  teacher:
    stage: train
    params:
      cohort: {{table: {cohort}, label_column: diagnosis}}
      features: {{folder: {bags}}}
      omics: {{table: {omics}}}
      task: {{name: classification, params: {{column: diagnosis, classes: [benign, tumour]}}}}
      model: {{slide_encoder: abmil, omics_encoder: snn, fusion: concat}}
      splits: {{folds: 3, stratify: label}}
      training: {{epochs: 3, batch_size: 4, selection: {{protocol: holdout}}}}
"""
    if not _has("distillers", "logit_kd"):
        assert run(tmp_path, teacher) == 0
        pytest.skip("no distiller plugin registered yet: checked the multi-modal teacher only")
    student = (
        teacher
        + f"""\
  student:
    stage: train
    params:
      cohort: {{table: {cohort}, label_column: diagnosis}}
      features: {{folder: {bags}}}
      task: {{name: classification, params: {{column: diagnosis, classes: [benign, tumour]}}}}
      model: {{slide_encoder: mean}}
      teacher: teacher
      distiller: logit_kd
      training: {{epochs: 2, batch_size: 4, selection: {{protocol: holdout}}}}
"""
    )
    assert run(tmp_path, student) == 0
    stages = tmp_path / "run" / "stages"
    for k in range(3):  # the student is tested on exactly the teacher's test patients
        a = pd.read_csv(stages / "teacher" / "splits" / f"splits_{k}.csv")["test"].dropna()
        b = pd.read_csv(stages / "student" / "splits" / f"splits_{k}.csv")["test"].dropna()
        assert set(a) == set(b)


def _has(kind: str, name: str) -> Any:
    from histo.manager import get_plugins

    return name in get_plugins().registry(kind)


def test_bad_inputs_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bags, cohort, _ = make_bags(tmp_path)
    frame = pd.read_csv(cohort)
    frame.loc[3, "diagnosis"] = "unknown"
    frame.to_csv(cohort, index=False)
    text = WSI.format(cohort=cohort, bags=bags)
    assert run(tmp_path, text) == 1  # a value outside `classes` is an error, not a silent exclusion
    captured = capsys.readouterr()
    assert "value 'unknown' in column 'diagnosis'" in captured.out + captured.err
    assert not (tmp_path / "run" / "stages" / "train" / "stage.json").exists()
    frame.loc[3, "diagnosis"] = None  # a missing label is a per-patient skip
    frame.to_csv(cohort, index=False)
    bad = text.replace(
        "slide_encoder: {name: abmil, params: {hidden: 16, attention_dim: 8}}", "omics_encoder: snn"
    )
    assert run(tmp_path, bad, "bad") == 1
    captured = capsys.readouterr()
    assert "set the stage's `omics:` section" in captured.out + captured.err


def test_predict_stage_runs_fold_models_on_new_bags(tmp_path: Path) -> None:
    bags, cohort, _ = make_bags(tmp_path)
    text = WSI.format(cohort=cohort, bags=bags).replace("epochs: 6", "epochs: 3")
    new_bags, _, _ = make_bags(tmp_path / "new", patients=6, seed=9)
    text += f"""\
  predict:
    stage: predict
    params:
      model: {tmp_path / "run" / "stages" / "train"}
      features: {{folder: {new_bags}}}
"""
    assert run(tmp_path, text) == 0
    out = tmp_path / "run" / "stages" / "predict"
    slides = pd.read_csv(out / "slide_predictions.csv")
    assert len(slides) == 9 and (slides["folds"] == 3).all()  # 6 patients, every second has 2 slides
    assert np.allclose(slides["prob_benign"] + slides["prob_tumour"], 1)
    truth = slides["slide_id"].str[1:3].astype(int) % 2  # make_bags: odd patients are tumours
    assert (slides["predicted_class"] == np.where(truth == 1, "tumour", "benign")).mean() >= 0.8
    attention = np.load(out / "attention" / f"{slides['slide_id'][0]}.npz")
    assert attention["20x_attention"].shape[0] == attention["20x_coords"].shape[0]
    assert attention["20x_attention"].sum() == pytest.approx(1, abs=1e-4)


@pytest.mark.slow
def test_ddp_training_under_torchrun(tmp_path: Path) -> None:
    """Two CPU processes (gloo) train the same folds; rank 0 writes the outputs. torchrun runs as
    `python -m torch.distributed.run`: a `torchrun` script on PATH may belong to another environment
    (and import another checkout's histo)."""
    import importlib.util
    import os
    import subprocess
    import sys

    if importlib.util.find_spec("torch.distributed.run") is None:
        pytest.skip("this torch has no torch.distributed.run (torchrun)")
    bags, cohort, _ = make_bags(tmp_path)
    recipe = tmp_path / "ddp.yaml"
    recipe.write_text(WSI.format(cohort=cohort, bags=bags).replace("epochs: 6", "epochs: 4"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "histo", "run", str(recipe), "--out", str(tmp_path / "ddp"), "--quiet"],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = read_json(tmp_path / "ddp" / "summary.json")
    assert summary["world_size"] == 2 and summary["status"] == "done"
    metrics = read_json(tmp_path / "ddp" / "stages" / "train" / "metrics.json")
    assert metrics["summary"]["auc"]["mean"] > 0.8
    predictions = pd.read_csv(tmp_path / "ddp" / "stages" / "train" / "predictions.csv")
    assert predictions["patient_id"].is_unique and len(predictions) == 24


class _Constant(torch.nn.Module):
    """Logits that a learning rate of 1e-12 cannot move: every epoch's validation AUC ties."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = torch.nn.Parameter(torch.tensor([0.0, 0.1]))

    def forward(self, batch: dict) -> dict:  # type: ignore[type-arg]
        n = batch["omics"]["g"].shape[0]
        return {"logits": self.bias.expand(n, 2) + 0 * batch["omics"]["g"].sum(1, keepdim=True)}


@pytest.mark.parametrize(("ties", "expected"), [("later", 3), ("earlier", 0)])
def test_tied_validation_scores_select_the_configured_epoch(tmp_path: Path, ties: str, expected: int) -> None:
    import logging

    from histo.plugins.tasks.classification import ClassificationTask
    from histo.plugins.tasks.configs import ClassificationConfig
    from histo.plugins.training.config import LoopConfig
    from histo.plugins.training.dataset import PatientDataset
    from histo.plugins.training.trainer import fit

    task = ClassificationTask(ClassificationConfig(column="y", classes=["a", "b"]))
    task.fit(pd.DataFrame({"y": ["a", "b"] * 4}, index=[f"P{i}" for i in range(8)]))
    targets = np.array([0, 1] * 4)
    data = PatientDataset([f"P{i}" for i in range(8)], targets, omics={"g": np.ones((8, 3), np.float32)})
    loop = LoopConfig.model_validate(
        {"epochs": 4, "batch_size": 4, "optimizer": {"lr": 1e-12}, "early_stopping": {"ties": ties}}
    )
    result = fit(_Constant(), task, data, data, loop, tmp_path, device=torch.device("cpu"), seed=0,
                 log=logging.getLogger("test"))  # fmt: skip
    assert [round(h["val_auc"], 6) for h in result.history] == [0.5] * 4
    assert result.best_epoch == expected


def test_train_stage_saves_out_of_fold_attention_per_slide(tmp_path: Path) -> None:
    """Every test patient's whole-bag attention, cut back into its slides (odd patients have two)."""
    import h5py

    bags, cohort, _ = make_bags(tmp_path)
    assert run(tmp_path, WSI.format(cohort=cohort, bags=bags).replace("epochs: 6", "epochs: 2")) == 0
    stage = tmp_path / "run" / "stages" / "train"
    slides = sorted(p.stem for p in (bags / "features" / "20x").glob("*.h5"))
    assert read_json(stage / "attention" / "index.json") == slides  # each slide once, from its test fold
    for patient in ("P00", "P01"):
        parts = [s for s in slides if s.startswith(patient.replace("P", "S"))]
        total = 0.0
        for slide in parts:
            maps = np.load(stage / "attention" / f"{slide}.npz")
            with h5py.File(bags / "features" / "20x" / f"{slide}.h5") as f:
                np.testing.assert_array_equal(maps["20x_coords"], f["coords"][()])
            assert maps["20x_attention"].shape == (len(maps["20x_coords"]),)
            total += float(maps["20x_attention"].sum())
        assert total == pytest.approx(1.0, abs=1e-5), "attention over the patient's whole bag sums to one"


def test_teacher_attention_maps_have_one_map_per_gene_group(tmp_path: Path) -> None:
    from histo.plugins.report.heatmap import read_weight_maps

    bags, cohort, table = make_bags(tmp_path, patients=12)
    recipe = f"""\
seed: 1
stages:
  train:
    stage: train
    params:
      cohort: {{table: {cohort}, label_column: diagnosis}}
      omics: {{table: {table}, groups: {{genes: {{tumour: [G0, G1, G2], microenvironment: [G3, G4, G5]}}}}}}
      features: {{folder: {bags}, magnifications: [20x]}}
      task: {{name: classification, params: {{column: diagnosis, classes: [benign, tumour]}}}}
      model:
        fusion: {{name: dmf, params: {{preset: default, dim: 8, omics_hidden: [8],
                  attention: {{heads: 1, head_dim: 8, offset_groups: 1, offset_map_size: 4}}}}}}
      splits: {{folds: 2, val_fraction: 0.25}}
      training: {{epochs: 1, batch_size: 4, selection: {{protocol: holdout}}}}
"""
    assert run(tmp_path, recipe) == 0
    maps = read_weight_maps(tmp_path / "run" / "stages" / "train" / "attention" / "S00-0.npz")
    assert sorted(m.name for m in maps) == ["attention", "attention_microenvironment", "attention_tumour"]
    assert all(m.magnification == "20x" and np.isfinite(m.weights).all() for m in maps)


def test_predict_stage_gives_survival_risk_groups(tmp_path: Path) -> None:
    """A WSI survival model on new bags: fold-mean risk, risk centred on each fold's training median,
    high/low groups from it, and the mean survival curve per bin."""
    bags, cohort, _ = make_bags(tmp_path)
    table = pd.read_csv(cohort)
    tumour = (table["diagnosis"] == "tumour").to_numpy()
    rng = np.random.default_rng(5)
    noise = table["patient_id"].map({p: rng.uniform(0.5, 1.5) for p in table["patient_id"]})
    table["time"] = np.where(tumour, 5.0, 20.0) * noise  # one value per patient, whatever its slides
    table["event"] = table["patient_id"].map({p: int(rng.random() < 0.8) for p in table["patient_id"]})
    table.to_csv(cohort, index=False)
    new_bags, _, _ = make_bags(tmp_path / "new", patients=6, seed=9)
    text = f"""\
seed: 2
stages:
  train:
    stage: train
    params:
      cohort: {{table: {cohort}, time_column: time, event_column: event}}
      features: {{folder: {bags}}}
      task: {{name: survival, params: {{bins: 3}}}}
      model: {{slide_encoder: {{name: abmil, params: {{hidden: 16, attention_dim: 8}}}}}}
      splits: {{folds: 3, stratify: event}}
      training: {{epochs: 4, batch_size: 4, optimizer: {{lr: 0.005}}, selection: {{protocol: holdout}}}}
  predict:
    stage: predict
    params: {{model_stage: train, features: {{folder: {new_bags}}}}}
"""
    assert run(tmp_path, text) == 0
    slides = pd.read_csv(tmp_path / "run" / "stages" / "predict" / "slide_predictions.csv")
    assert len(slides) == 9 and (slides["folds"] == 3).all()
    assert {"risk", "risk_centred", "risk_group", "survival_bin0", "survival_bin2"} <= set(slides.columns)
    assert set(slides["risk_group"]) <= {"high", "low"}
    assert (slides["risk_group"] == "high").equals(slides["risk_centred"] > 0)
    curves = slides.filter(like="survival_bin").to_numpy()
    assert ((curves > 0) & (curves <= 1)).all() and (np.diff(curves, axis=1) <= 1e-12).all()
