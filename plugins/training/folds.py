"""One cross-validation fold: fit transforms on its training part, train, select on validation,
evaluate on its test part, and save what is needed to rebuild the model later."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from histo.interfaces import ModelDims, StageContext
from histo.io import write_json_atomic
from histo.plugins.cohort import Fold, OmicsPipeline

from .assemble import build_model
from .config import LoopConfig, ModelConfig
from .dataset import PatientDataset
from .inputs import TrainingInputs
from .shard_source import ShardFeatures
from .stream import PatientStream
from .trainer import FitResult, Predictions, fit, predict


@dataclass
class FoldData:
    """The fold's datasets, built with transforms fitted on its training patients only."""

    train: PatientDataset | PatientStream
    val: PatientDataset | PatientStream
    test: PatientDataset | PatientStream
    dims: ModelDims
    omics_groups: dict[str, list[str]]


def prepare_fold(
    fold: Fold,
    inputs: TrainingInputs,
    task: Any,
    loop: LoopConfig,
    omics_preprocess: Any,
    seed: int,
    num_outputs: int | None = None,
    fit_on: list[str] | None = None,
) -> FoldData:
    """`fit_on`: the patients the task (bins, class weights) and the omics transforms are fitted on;
    default the fold's training part. Inner selection splits pass the outer training part, so that all
    their models share one input space and can be averaged."""
    labels = inputs.labels
    fit_on = fold.train if fit_on is None else fit_on
    task.fit(labels.loc[fit_on])
    omics_groups: dict[str, list[str]] = {}
    parts: dict[str, dict[str, np.ndarray]] = {"train": {}, "val": {}, "test": {}}
    if inputs.omics is not None:
        pipeline = OmicsPipeline(omics_preprocess).fit(inputs.omics, fit_on)
        omics_groups = dict(pipeline.groups_ or {})
        for name, ids in (("train", fold.train), ("val", fold.val), ("test", fold.test)):
            parts[name] = pipeline.transform(inputs.omics, ids)

    def dataset(ids: list[str], part: str, sample: bool) -> PatientDataset | PatientStream:
        if isinstance(inputs.features, ShardFeatures):  # streamed; only training is shuffled
            return PatientStream(
                ids, task.encode(labels.loc[ids]), slides=inputs.slides, features=inputs.features,
                omics=parts[part], max_patches=loop.max_patches, sample=sample, shuffle=sample,
                buffer=inputs.shuffle_buffer, seed=seed,
            )  # fmt: skip
        return PatientDataset(
            ids, task.encode(labels.loc[ids]), slides=inputs.slides, features=inputs.features,
            omics=parts[part], max_patches=loop.max_patches, sample=sample, seed=seed,
        )  # fmt: skip

    features = inputs.features
    dims = ModelDims(
        feature_dim=features.feature_dim if features is not None else 0,
        omics_groups={g: len(genes) for g, genes in omics_groups.items()},
        num_outputs=num_outputs or task.num_outputs,
        magnifications=features.magnifications if features is not None else (),
    )
    return FoldData(
        dataset(fold.train, "train", True),
        dataset(fold.val, "val", False),
        dataset(fold.test, "test", False),
        dims,
        omics_groups,
    )


def save_model_card(
    path: Path, model: ModelConfig, dims: ModelDims, omics_groups: dict[str, list[str]], members: int = 1
) -> None:
    """What rebuilding the model needs besides its weights (best.pt beside it); `members` > 1: best.pt
    holds an ensemble of that many models whose outputs are averaged."""
    write_json_atomic(
        path,
        {
            "members": members,
            "model": model.model_dump(mode="json"),
            "dims": {
                "feature_dim": dims.feature_dim, "omics_groups": dict(dims.omics_groups),
                "num_outputs": dims.num_outputs, "magnifications": list(dims.magnifications),
            },
            "omics_genes": omics_groups,
        },
    )  # fmt: skip


PRESET_MODELS = ("dmf", "dmf_student")  # models whose config gained `preset`, later defaulting to reference


def _pin_presets(model: Any) -> Any:
    """A model card written before `preset` existed describes histo's own variant: keep it so.

    Without the key, a newer histo would fill the reference preset's sampling conventions into the keys
    that card lacks, and the saved weights would load into a model that computes something else."""
    if isinstance(model, list):
        return [_pin_presets(item) for item in model]
    if not isinstance(model, dict):
        return model
    pinned = {key: _pin_presets(value) for key, value in model.items()}
    params = pinned.get("params")
    if pinned.get("name") in PRESET_MODELS and isinstance(params, dict) and "preset" not in params:
        pinned["params"] = {**params, "preset": "default"}
    return pinned


def load_model(fold_dir: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a trained fold's model from model.json and best.pt (safe loading: weights only)."""
    from histo.recipe import resolve_config

    card = json.loads((fold_dir / "model.json").read_text())
    config = resolve_config(ModelConfig, _pin_presets(card["model"]), label=str(fold_dir / "model.json"))
    d = card["dims"]
    dims = ModelDims(d["feature_dim"], d["omics_groups"], d["num_outputs"], tuple(d["magnifications"]))
    model = build_model(config, dims, int(card.get("members", 1)))
    state = torch.load(fold_dir / "best.pt", map_location=device, weights_only=True)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), card


def train_fold(
    fold: Fold,
    data: FoldData,
    task: Any,
    model_config: ModelConfig,
    loop: LoopConfig,
    fold_dir: Path,
    ctx: StageContext,
    *,
    coordinator: Any = None,
    teacher: nn.Module | None = None,
    distiller: Any = None,
    init: Path | None = None,
) -> tuple[FitResult, Predictions, dict[str, float]]:
    seed = ctx.seed * 100 + fold.index
    torch.manual_seed(seed)
    model = build_model(model_config, data.dims)
    if init is not None and not (fold_dir / "last.pt").exists():
        from histo.errors import HistoError

        state = torch.load(init, map_location="cpu", weights_only=True)["model"]
        if any(key.startswith("members.") for key in state):
            raise HistoError(
                f"cannot start from {init}: it holds an ensemble of models; train the stage it comes from "
                "with `training.selection: {final: refit, seeds: 1}` to get a single model to start from"
            )
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise HistoError(
                f"cannot start from {init}: the model differs from the one saved there: {exc}"
            ) from None
    if ctx.is_main:
        save_model_card(fold_dir / "model.json", model_config, data.dims, data.omics_groups)
    device = torch.device(ctx.device)
    result = fit(
        model, task, data.train, data.val, loop, fold_dir, device=device, seed=seed, log=ctx.log,
        coordinator=coordinator, teacher=teacher, distiller=distiller,
        rank=ctx.rank, world_size=ctx.world_size,
    )  # fmt: skip
    test, metrics = evaluate_fold(model, data, task, loop, device)
    return result, test, metrics


def evaluate_fold(
    model: nn.Module, data: FoldData, task: Any, loop: LoopConfig, device: torch.device
) -> tuple[Predictions, dict[str, float]]:
    """The fold's test predictions and metrics; the training part is predicted too, as the reference
    of the survival metrics and of the risk groups (its median risk lands in `extras`)."""
    test = predict(model, data.test, loop.batch_size, device)
    data.train.sample = False  # the training reference is predicted like any evaluation set
    if isinstance(data.train, PatientStream):  # every patient once, in shard order, on every rank
        data.train.shuffle = False
        data.train.split_ranks(0, 1)
    train_ref = predict(model, data.train, loop.batch_size, device)
    metrics = task.evaluate(
        test.logits, test.targets, train_logits=train_ref.logits, train_targets=train_ref.targets
    )
    # the training median risk, for risk groups that this fold's model would draw
    risk = task.predict(train_ref.logits).get("risk")
    test.extras["train_median_risk"] = float(np.median(risk)) if risk is not None else None
    return test, metrics
