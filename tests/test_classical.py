"""Classical models: planted signal recovered, inner CV confined to the training rows, and a recipe that
runs deep and classical models side by side on the same folds (omics, pooled slide features, both)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_train_stage import make_bags

from histo.cli import main
from histo.io import read_json
from histo.manager import Plugins
from histo.plugins.classical.fold import fit_fold, inner_splits


def survival_data(n: int, p: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Exponential times whose hazard rises with the first two features; about 30% censored."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    time = rng.exponential(size=n) * np.exp(-(1.2 * x[:, 0] - 0.8 * x[:, 1]))
    censor = rng.exponential(scale=3.0, size=n)
    event = (time <= censor).astype(float)
    return x, np.stack([np.minimum(time, censor), event], axis=1)


def build(plugins: Plugins, name: str, params: dict[str, Any] | None = None) -> Any:
    return plugins.registry("classical_models").build(name, params or {})


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("coxnet", {}),
        ("cox_ph", {"components": 8}),
        ("random_survival_forest", {"n_estimators": 30, "min_samples_leaf": [10]}),
    ],
)
def test_survival_models_recover_a_planted_signal(
    histo_plugins: Plugins, name: str, params: dict[str, Any]
) -> None:
    from histo.plugins.evaluation.bootstrap import harrell

    x, y = survival_data(260, 10, seed=1)
    fit, test = np.arange(200), np.arange(200, 260)
    model = build(histo_plugins, name, params)
    record = model.fit(x[fit], y[fit], inner_splits(y[fit, 1], 3, 0), num_outputs=1, seed=0)
    assert record["chosen"] and "inner 3-fold CV" in record["selected_on"]
    risk = model.predict(x[test])
    assert harrell(risk, y[test, 0], y[test, 1]) > 0.7
    curves = model.survival_function(x[test], np.array([0.1, 0.5, 1.0]))
    if curves is not None:  # a forest's own S(t): a probability, falling with time
        assert curves.shape == (60, 3) and (np.diff(curves, axis=1) <= 1e-12).all()


@pytest.mark.parametrize("name", ["logistic_l2", "logistic_elasticnet"])
def test_logistic_models_recover_three_planted_classes(histo_plugins: Plugins, name: str) -> None:
    from histo.plugins.evaluation.bootstrap import auc

    rng = np.random.default_rng(2)
    y = np.arange(240) % 3
    x = rng.normal(size=(240, 20))
    x[:, :3] += 1.5 * np.eye(3)[y]
    model = build(histo_plugins, name)
    model.fit(x[:180], y[:180], inner_splits(y[:180], 3, 0), num_outputs=3, seed=0)
    probabilities = model.predict(x[180:])
    assert probabilities.shape == (60, 3) and np.allclose(probabilities.sum(1), 1)
    assert auc(probabilities, y[180:]) > 0.85


def test_the_best_inner_score_wins(histo_plugins: Plugins) -> None:
    """What is chosen is the candidate with the best mean inner-CV score, recorded for the fold."""
    x, y = survival_data(150, 30, seed=3)
    for name, params in (("coxnet", {"l1_ratios": [0.5, 1.0]}), ("cox_ph", {"components": 5})):
        record = build(histo_plugins, name, params).fit(
            x, y, inner_splits(y[:, 1], 5, 0), num_outputs=1, seed=0
        )
        best = max(record["inner_scores"], key=lambda s: s["mean"])
        assert record["chosen"] == best["params"]
        assert len(record["inner_scores"]) == (2 if name == "coxnet" else 5)


class Spy:
    """A classical model that records what it is given and predicts a constant."""

    tasks = ("survival", "classification")

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}

    def fit(self, x: np.ndarray, y: np.ndarray, inner: Any, *, num_outputs: int, seed: int) -> dict[str, Any]:
        self.seen = {"x": x.copy(), "inner": inner, "num_outputs": num_outputs}
        return {"chosen": {}, "selected_on": "spy"}

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x[:, 0], dtype=np.float64)

    def survival_function(self, x: np.ndarray, times: np.ndarray) -> None:
        return None


def test_inner_cv_never_sees_the_test_fold(histo_plugins: Plugins) -> None:
    """The rows a model is fitted and selected on are exactly the fold's training patients."""
    task = histo_plugins.registry("tasks").build("survival", {"loss": "cox"})
    ids = [f"P{i:03d}" for i in range(60)]
    x, y = survival_data(60, 3, seed=4)
    labels = pd.DataFrame({"time": y[:, 0], "event": y[:, 1].astype(int)}, index=ids)
    # the first pooled column is the patient number itself: it tells which patients reached the model
    pooled = pd.DataFrame({"pid": np.arange(60.0), "a": x[:, 0], "b": x[:, 1]}, index=ids)
    fit_ids, test_ids = ids[:40], ids[40:]
    spy = Spy()
    result = fit_fold(spy, task, "survival", labels, fit_ids, test_ids, 0, omics=None, preprocess=None,
                      pooled=pooled, inner_folds=4, inner_seed=0, seed=0)  # fmt: skip
    seen = spy.seen["x"][:, 0]
    train_pid = np.arange(40.0)
    # z-scored with the training rows' own mean and std: undo it to read the patient numbers back
    assert np.allclose(np.sort(seen * train_pid.std() + train_pid.mean()), train_pid)
    rows = set()
    for fit_rows, held_rows in spy.seen["inner"]:
        assert not set(fit_rows) & set(held_rows)
        assert max(fit_rows.max(), held_rows.max()) < len(fit_ids)
        rows |= set(held_rows)
    assert rows == set(range(len(fit_ids)))  # every training row is held out once, no test row ever
    assert list(result.predictions["patient_id"]) == test_ids
    assert {"risk", "risk_centred", "time", "event", "fold"} <= set(result.predictions.columns)


def test_inner_cv_fits_small_classes_or_says_why_it_cannot() -> None:
    from histo.errors import HistoError

    splits = inner_splits(np.array([0] * 20 + [1] * 2), 5, 0)
    assert len(splits) == 2  # as many folds as the rarest class has patients
    with pytest.raises(HistoError, match="needs at least 2"):
        inner_splits(np.array([0] * 20 + [1]), 5, 0)


SIDE_BY_SIDE = """\
seed: 5
stages:
  deep:
    stage: train
    params:
      cohort: {{table: {cohort}, label_column: diagnosis}}
      omics: {{table: {omics}}}
      features: {{folder: {bags}}}
      task: {{name: classification, params: {{column: diagnosis, classes: [benign, tumour]}}}}
      model: {{omics_encoder: {{name: snn, params: {{hidden: [8], output_dim: 8}}}}}}
      splits: {{folds: 3, stratify: label}}
      training: {{epochs: 3, batch_size: 8, selection: {{protocol: holdout}}}}
      attention_maps: false
  omics_l2:
    stage: classical
    params: {{like: deep, model: logistic_l2, inputs: omics, inner_cv: {{folds: 3}}, bootstrap: 200}}
  slides_l2:
    stage: classical
    params: {{like: deep, model: logistic_l2, inputs: slides, inner_cv: {{folds: 3}}, bootstrap: 200}}
  both_en:
    stage: classical
    params:
      like: deep
      model: {{name: logistic_elasticnet, params: {{c_grid: [0.1, 1.0], l1_ratios: [0.5]}}}}
      inputs: both
      inner_cv: {{folds: 3}}
      bootstrap: 200
  table:
    stage: compare
    params: {{stages: [deep, omics_l2, slides_l2, both_en], reference: deep, bootstrap: 200, table: paper}}
  report:
    stage: report
"""


@pytest.mark.slow
def test_deep_and_classical_side_by_side_on_the_same_folds(tmp_path: Path) -> None:
    bags, cohort, omics = make_bags(tmp_path, patients=30)
    recipe = tmp_path / "side.yaml"
    recipe.write_text(SIDE_BY_SIDE.format(cohort=cohort, omics=omics, bags=bags))
    assert main(["run", str(recipe), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    stages = tmp_path / "run" / "stages"
    deep = pd.read_csv(stages / "deep" / "predictions.csv")
    for name in ("omics_l2", "slides_l2", "both_en"):
        predictions = pd.read_csv(stages / name / "predictions.csv")
        assert set(predictions.columns) >= {"patient_id", "fold", "target", "prob_benign", "prob_tumour"}
        # the same patients in the same test folds as the deep model
        assert sorted(zip(predictions["fold"], predictions["patient_id"], strict=True)) == sorted(
            zip(deep["fold"], deep["patient_id"], strict=True)
        )
        metrics = read_json(stages / name / "metrics.json")
        assert metrics["summary"]["auc"]["mean"] > 0.6  # the planted signal, in omics and slides
        pooled = metrics["pooled"]["auc"]
        assert pooled["low"] <= pooled["estimate"] <= pooled["high"]
        model = read_json(stages / name / "folds" / "0" / "model.json")
        assert model["chosen"] and model["inner_scores"]
        assert (stages / name / "roc.png").exists()
    width = {
        n: read_json(stages / n / "folds" / "0" / "model.json")["features"]
        for n in ("omics_l2", "slides_l2", "both_en")
    }
    assert width == {"omics_l2": 6, "slides_l2": 16, "both_en": 22}  # 6 genes; 8-d features at 10x and 20x
    pairs = read_json(stages / "table" / "paper_pairs.json")
    assert len([p for p in pairs if p["metric"] == "auc"]) == 6  # every pair of the 4 models
    assert all(p["same_folds"] for p in pairs)
    table = (stages / "table" / "paper.md").read_text()
    assert "| deep |" in table and "p vs deep (auc)" in table and "bootstrap CI" in table
    html = (tmp_path / "run" / "report.html").read_text()
    assert "Which differences are real" in html and "95% CI of the mean" in html
    assert json.loads((stages / "table" / "compare.json").read_text())["primary"] == "auc"


def test_like_refuses_settings_it_would_ignore(tmp_path: Path) -> None:
    bags, cohort, omics = make_bags(tmp_path, patients=12)
    text = SIDE_BY_SIDE.format(cohort=cohort, omics=omics, bags=bags).split("  slides_l2:")[0]
    text = text.replace("inputs: omics,", f"inputs: omics, cohort: {{table: {cohort}}},")
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(text)
    assert main(["run", str(recipe), "--out", str(tmp_path / "run"), "--quiet"]) == 1
    log = (tmp_path / "run" / "histo.log").read_text()
    assert "remove cohort" in log


@pytest.mark.slow
def test_the_paper_table_recipe_runs_on_the_demo_cohort(tmp_path: Path) -> None:
    """recipes/paper_table.yaml as shipped, with one epoch per model and few resamples."""
    text = (Path(__file__).resolve().parents[1] / "recipes" / "paper_table.yaml").read_text()
    tiny = {"epochs: 6": "epochs: 1", "epochs: 3": "epochs: 1", "max_patches: 256": "max_patches: 32",
            "patients: 30, slide_size: 2048": "patients: 24, slide_size: 1024"}  # fmt: skip
    for before, after in tiny.items():
        assert before in text
        text = text.replace(before, after)
    text = text.replace("reference: distilled", "reference: distilled\n      bootstrap: 50")
    recipe = tmp_path / "paper_table.yaml"
    recipe.write_text(text)
    assert main(["run", str(recipe), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    stage = tmp_path / "run" / "stages" / "table"
    rows = read_json(stage / "paper_table.json")
    assert [r["stage"] for r in rows][-3:] == ["teacher", "student", "distilled"] and len(rows) == 12
    assert all(r["auc_p_vs_reference"] is None for r in rows if r["stage"] == "distilled")
    pairs = read_json(stage / "paper_table_pairs.json")
    assert len(pairs) == 66 * 4 and all(p["same_folds"] for p in pairs)  # 12 models, 4 metrics
    table = (stage / "paper_table.md").read_text()
    assert "| MCAT |" in table and "p vs student, distilled (slides) (auc)" in table
    assert "Which differences are real" in (tmp_path / "run" / "report.html").read_text()


STAD_COXNET = """\
seed: 42
stages:
  coxnet:
    stage: classical
    params:
      model: coxnet
      cohort:
        table: {data}/omics/tcga_stad/clinical.csv
        patient_column: case_id
        time_column: survival_months
        event_column: censorship
        event_is: censored
      omics: {{table: {data}/omics/tcga_stad/rna_xena.csv}}
      task: {{name: survival, params: {{loss: cox}}}}
      splits: {{files: {data}/omics/tcga_stad/splits, pattern: "splits_[03].csv", stratify: event}}
      inner_cv: {{folds: 5, seed: 0}}
      bootstrap: 0
"""


@pytest.mark.slow
def test_coxnet_matches_the_tcga_stad_benchmark(shared_data: Path, tmp_path: Path) -> None:
    """The classical stage's Coxnet is benchmarks/tcga_stad_coxnet.py's "cv" column, fold by fold."""
    import importlib.util
    import sys

    from sksurv.util import Surv

    from histo.plugins.cohort import OmicsPipeline, load_cohort, load_omics
    from histo.recipe import load_recipe

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "tcga_stad_coxnet.py"
    spec = importlib.util.spec_from_file_location("tcga_stad_coxnet", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # its dataclasses look their module up there
    spec.loader.exec_module(bench)

    recipe = tmp_path / "stad.yaml"
    recipe.write_text(STAD_COXNET.format(data=shared_data))
    assert main(["run", str(recipe), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    stage = tmp_path / "run" / "stages" / "coxnet"
    metrics = read_json(stage / "metrics.json")
    config = load_recipe(recipe).stages[0].config
    cohort, omics = load_cohort(config.cohort), load_omics(config.omics)
    time = cohort.patients["time"].astype(float)
    event = cohort.patients["event"].astype(int)  # 1 = event (the loader applied event_is)
    for k in range(2):
        split = bench.read_split(stage / "splits" / f"splits_{k}.csv")
        pipeline = OmicsPipeline(config.omics.preprocess).fit(omics, split["train"])
        x = {part: bench.design(pipeline, omics, ids).to_numpy() for part, ids in split.items()}
        t = {part: time.loc[ids].to_numpy() for part, ids in split.items()}
        e = {part: event.loc[ids].to_numpy() for part, ids in split.items()}
        model = bench.fit_coxnet(x["train"], Surv.from_arrays(e["train"].astype(bool), t["train"]), 0.5)
        j = bench.inner_cv_alpha(x["train"], t["train"], e["train"], np.asarray(model.alphas_), 0.5, k)
        expected = bench.c_index(x["test"] @ model.coef_[:, j], t["test"], e["test"])
        assert metrics["folds"][k]["test"]["c_index"] == pytest.approx(expected, abs=1e-12)
        assert metrics["folds"][k]["chosen"]["alpha"] == pytest.approx(float(model.alphas_[j]))
