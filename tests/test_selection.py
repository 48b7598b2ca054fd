"""Model selection inside a fold's training part: inner CV / repeated splits, the fixed-epoch refit,
seed and inner-model ensembles, and that the test fold never takes part."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_train_stage import WSI, make_bags, run

from histo.io import read_json
from histo.plugins.training.selection import choose_epoch


def test_choose_epoch_takes_the_best_mean_curve() -> None:
    # each curve alone peaks elsewhere (0 and 3); their mean peaks at epoch 2
    curves = [[0.9, 0.5, 0.7, 0.2], [0.1, 0.5, 0.7, 0.9]]
    assert choose_epoch(curves, "max", "later") == (2, pytest.approx(0.7))
    assert choose_epoch([[3.0, 1.0, 2.0]], "min", "later") == (1, 1.0)
    # a tie goes where `ties` says; a NaN epoch (no comparable pair) is skipped; short curves count
    assert choose_epoch([[0.6, 0.6, 0.5]], "max", "later")[0] == 1
    assert choose_epoch([[0.6, 0.6, 0.5]], "max", "earlier")[0] == 0
    assert choose_epoch([[math.nan, 0.4, 0.5], [0.3, 0.2]], "max", "later")[0] == 1
    # only epochs every model reached: the late 0.9 of the longer curve does not count
    assert choose_epoch([[0.5, 0.6, 0.9], [0.5, 0.6]], "max", "later") == (1, pytest.approx(0.6))


def test_inner_splits_stay_inside_the_training_part() -> None:
    from histo.plugins.cohort import SplitConfig
    from histo.plugins.training.config import SelectionConfig
    from histo.plugins.training.selection import FoldSetup, inner_splits

    ids = [f"P{i:02d}" for i in range(40)]
    labels = pd.DataFrame({"event": [i % 3 == 0 for i in range(40)]}, index=ids).astype(int)
    inputs = type("Inputs", (), {"labels": labels, "label_column": None})()
    setup = FoldSetup(inputs, None, None, None, None, SplitConfig(stratify="event"))  # type: ignore[arg-type]
    part = ids[:30]  # the other 10 are the outer test fold
    pairs = inner_splits(part, setup, SelectionConfig(protocol="inner_cv", folds=5), seed=1)
    assert len(pairs) == 5
    assert sorted(p for _, val in pairs for p in val) == part  # every training patient validates once
    for train, val in pairs:
        assert set(train) | set(val) == set(part) and not set(train) & set(val)
        assert labels.loc[val, "event"].sum() == 2  # 10 events among 30, stratified
    pairs = inner_splits(part, setup, SelectionConfig(protocol="repeated", folds=4), seed=1)
    assert len(pairs) == 4
    assert all(len(val) == 6 and set(train) | set(val) == set(part) for train, val in pairs)
    assert len({tuple(val) for _, val in pairs}) == 4  # four different carve-outs
    with pytest.raises(Exception, match=r"training\.selection"):
        inner_splits(part[:3], setup, SelectionConfig(protocol="inner_cv", folds=5), seed=1)


def test_ensemble_averages_members_and_reloads(tmp_path: Path) -> None:
    from histo.interfaces import ModelDims
    from histo.plugins.training.assemble import Ensemble, build_model
    from histo.plugins.training.config import ModelConfig
    from histo.plugins.training.folds import load_model, save_model_card
    from histo.recipe import resolve_config

    config = resolve_config(ModelConfig, {"omics_encoder": {"name": "snn", "params": {"hidden": [8]}}})
    dims = ModelDims(0, {"g": 5}, 2, ())
    torch.manual_seed(0)
    model = build_model(config, dims, members=3)
    assert isinstance(model, Ensemble)
    batch = {"omics": {"g": torch.randn(4, 5)}}
    model.eval()
    each = torch.stack([m(batch)["logits"] for m in model.members])
    assert torch.allclose(model(batch)["logits"], each.mean(0))
    assert not torch.allclose(each[0], each[1])  # the members differ, so the mean is not trivial
    torch.save({"model": model.state_dict()}, tmp_path / "best.pt")
    save_model_card(tmp_path / "model.json", config, dims, {"g": list("abcde")}, members=3)
    loaded, card = load_model(tmp_path)
    assert card["members"] == 3
    assert torch.allclose(loaded(batch)["logits"], model(batch)["logits"])


OMICS = """\
seed: 5
stages:
  train:
    stage: train
    params:
      cohort: {{table: {cohort}, label_column: diagnosis}}
      omics: {{table: {omics}}}
      task: {{name: classification, params: {{column: diagnosis, classes: [benign, tumour]}}}}
      model: {{omics_encoder: {{name: snn, params: {{hidden: [8], output_dim: 8}}}}}}
      splits: {{folds: 3, stratify: label}}
      training:
        epochs: 5
        batch_size: 8
        optimizer: {{lr: 0.01}}
        selection: {selection}
"""


def test_inner_cv_refit_trains_on_the_whole_training_part_for_the_chosen_epochs(tmp_path: Path) -> None:
    _, cohort, _ = make_bags(tmp_path)
    rng = np.random.default_rng(0)
    label = np.arange(24) % 2  # make_bags: odd patients are tumours
    genes = rng.normal(size=(24, 6)) + 2.5 * label[:, None] * (np.arange(6) < 3)
    omics = tmp_path / "strong_omics.csv"
    table = pd.DataFrame(genes, columns=[f"G{g}" for g in range(6)])
    table.insert(0, "patient_id", [f"P{i:02d}" for i in range(24)])
    table.to_csv(omics, index=False)
    text = OMICS.format(cohort=cohort, omics=omics, selection="{protocol: inner_cv, folds: 3, final: refit}")
    assert run(tmp_path, text) == 0
    stage = tmp_path / "run" / "stages" / "train"
    metrics = read_json(stage / "metrics.json")
    for k in range(3):
        split = pd.read_csv(stage / "splits" / f"splits_{k}.csv", dtype=str)
        train, test = set(split["train"].dropna()), set(split["test"].dropna())
        assert split["val"].dropna().empty and len(train) == 16 and len(test) == 8  # no carve-out wasted
        selection = read_json(stage / "folds" / str(k) / "selection.json")
        inner_val = [p for inner in selection["inner"] for p in [inner["n_val"]]]
        assert sum(inner_val) == 16 and all(i["n_train"] + i["n_val"] == 16 for i in selection["inner"])
        curve = [np.mean([i["history"][e]["val_auc"] for i in selection["inner"]]) for e in range(5)]
        assert selection["curve"] == pytest.approx(curve)
        epoch = max(e for e in range(5) if curve[e] >= max(curve) - 1e-12)  # ties: later
        record = metrics["folds"][k]
        assert record["best_epoch"] == selection["epoch"] == epoch
        assert record["n_val"] == 0 and record["selection"]["members"] == 1
        history = read_json(stage / "folds" / str(k) / "history.json")  # the refit: fixed epochs, no val
        assert len(history) == epoch + 1 and not any(key.startswith("val_") for key in history[0])
        assert not (stage / "folds" / str(k) / "members").exists()
    predictions = pd.read_csv(stage / "predictions.csv")
    assert predictions["patient_id"].is_unique and len(predictions) == 24
    assert metrics["summary"]["auc"]["mean"] > 0.8  # the planted signal is learnt


@pytest.mark.slow
def test_ensembles_are_saved_as_one_model_that_predict_and_heatmaps_use(tmp_path: Path) -> None:
    from histo.plugins.training.folds import load_model

    bags, cohort, _ = make_bags(tmp_path)
    new_bags, _, _ = make_bags(tmp_path / "new", patients=4, seed=9)
    text = WSI.format(cohort=cohort, bags=bags).replace("epochs: 6", "epochs: 3")
    selection = "selection: {protocol: repeated, folds: 2, final: ensemble, seeds: 2}"
    text = text.replace("selection: {protocol: holdout}", selection)
    text += f"""\
  predict:
    stage: predict
    params:
      model: {tmp_path / "run" / "stages" / "train"}
      features: {{folder: {new_bags}}}
"""
    assert run(tmp_path, text) == 0
    stage = tmp_path / "run" / "stages" / "train"
    record = read_json(stage / "folds" / "0" / "metrics.json")
    assert record["selection"]["members"] == 4 and record["selection"]["final"] == "ensemble"
    model, card = load_model(stage / "folds" / "0")
    assert card["members"] == 4 and len(model.members) == 4
    assert read_json(stage / "attention" / "index.json")  # attention maps come from the ensemble
    slides = pd.read_csv(tmp_path / "run" / "stages" / "predict" / "slide_predictions.csv")
    assert len(slides) == 6 and np.allclose(slides["prob_benign"] + slides["prob_tumour"], 1)


def test_auto_uses_inner_cv_ensembles_on_small_cohorts_only() -> None:
    from histo.plugins.training.config import LoopConfig, resolve_selection

    loop = LoopConfig()
    assert loop.selection.protocol == "auto" and loop.selection.final == "ensemble"
    assert resolve_selection(loop, 318).selection.protocol == "inner_cv"
    assert resolve_selection(loop, 500).selection.protocol == "holdout"
    pinned = LoopConfig.model_validate({"selection": {"protocol": "repeated"}})
    assert resolve_selection(pinned, 10).selection.protocol == "repeated"


@pytest.mark.slow
def test_shipped_tcga_stad_recipe_averages_inner_cv_models(shared_data: Path, tmp_path: Path) -> None:
    """The shipped recipe on one published fold (few epochs): no carve-out, 5 inner models averaged,
    every test patient from the published file's held-out column."""
    from histo.cli import main

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "tcga_stad_omics_survival.yaml"
    code = main(["run", str(recipe), "--out", str(tmp_path / "run"), "--quiet",
                 "--set", "stages.train.params.splits.pattern=splits_0.csv",
                 "--set", "stages.train.params.training.epochs=4"])  # fmt: skip
    assert code == 0
    stage = tmp_path / "run" / "stages" / "train"
    record = read_json(stage / "folds" / "0" / "metrics.json")
    assert record["n_val"] == 0 and record["selection"]["members"] == 5
    assert read_json(stage / "folds" / "0" / "model.json")["members"] == 5
    published = pd.read_csv(shared_data / "omics" / "tcga_stad" / "splits" / "splits_0.csv", dtype=str)
    held_out = set(published["val"].dropna())
    predictions = pd.read_csv(stage / "predictions.csv", dtype={"patient_id": str})
    assert set(predictions["patient_id"]) <= held_out and len(predictions) >= len(held_out) - 1
    inner = read_json(stage / "folds" / "0" / "selection.json")["inner"]
    assert sum(i["n_val"] for i in inner) == record["n_train"]  # every training patient validated once


def test_an_ensemble_cannot_be_a_teacher(tmp_path: Path) -> None:
    from histo.errors import HistoError
    from histo.plugins.stages.train import _single_teacher

    _single_teacher(tmp_path / "teacher", {"members": 1})
    with pytest.raises(HistoError, match=r"average of 5 models.*final: refit"):
        _single_teacher(tmp_path / "teacher", {"members": 5})
