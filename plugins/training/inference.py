"""Inference of trained fold models on new bags, averaged over folds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from histo.errors import HistoError
from histo.interfaces import StageContext
from histo.io import write_json_atomic

from .bags import SlideFeatures
from .dataset import PatientDataset
from .folds import load_model
from .inputs import feature_files
from .outputs import add_output_columns, class_names, write_csv
from .trainer import predict


def _patients(path: Path | None, slides: list[str]) -> dict[str, list[str]]:
    if path is None:
        return {s: [s] for s in slides}
    from histo.plugins.cohort.table import read_table, slide_key

    table = read_table(Path(path))
    for column in ("slide_id", "patient_id"):
        if column not in table.columns:
            raise HistoError(f"{path}: needs columns slide_id and patient_id (has {list(table.columns)})")
    known = {slide_key(s) for s in slides}
    groups: dict[str, list[str]] = {}
    for slide, patient in zip(table["slide_id"].astype(str), table["patient_id"].astype(str), strict=True):
        if slide_key(slide) in known:
            groups.setdefault(patient, []).append(slide_key(slide))
    return groups


def _task(model_dir: Path) -> Any:
    from histo.plugins.stages.train import TrainConfig
    from histo.recipe import resolve_config

    path = model_dir / "stage_config.json"
    config = resolve_config(TrainConfig, json.loads(path.read_text()), label=str(path))
    if config.omics is not None and config.model.slide_encoder is None:
        raise HistoError(f"{model_dir} holds an omics-only model; predict runs models that read slides")
    return config.task.build(), config


def _fold_outputs(task: Any, logits: np.ndarray, median_risk: float | None) -> dict[str, np.ndarray]:
    outputs = {k: np.asarray(v) for k, v in task.predict(logits).items()}
    outputs = {k: v for k, v in outputs.items() if np.issubdtype(v.dtype, np.number) and k != "predicted"}
    if "risk" in outputs and median_risk is not None:
        outputs["risk_centred"] = outputs["risk"] - median_risk
    return outputs


def predict_bags(model_dir: Path, config: Any, ctx: StageContext) -> tuple[pd.DataFrame, pd.DataFrame]:
    task, train_config = _task(model_dir)
    if train_config.omics is not None or train_config.model.fusion is not None:
        raise HistoError(
            f"{model_dir} is a multi-modal model: it needs a transcriptome; predict with a WSI-only "
            "(student) train stage"
        )
    if config.features.source != "bags":
        raise HistoError(
            "the predict stage reads per-slide bags (random access, attention per slide): drop "
            "`source: shards` from its `features`"
        )
    features = SlideFeatures(feature_files(config.features, ctx))
    slide_ids = sorted(features.slides())
    if not slide_ids:
        raise HistoError("no slide has features for every magnification the model needs")
    fold_dirs = sorted((model_dir / "folds").iterdir(), key=lambda p: int(p.name))
    if config.folds is not None:
        fold_dirs = [d for d in fold_dirs if int(d.name) in config.folds]
    device = torch.device(ctx.device)

    def run(groups: dict[str, list[str]], keep_attention: bool) -> pd.DataFrame:
        ids = list(groups)
        dataset = PatientDataset(ids, np.zeros(len(ids), np.int64), slides=groups, features=features)
        per_fold = []
        attention: dict[str, Any] = {}
        for fold_dir in fold_dirs:
            model, card = load_model(fold_dir, device)
            wanted = tuple(card["dims"]["magnifications"])
            if set(wanted) - set(features.magnifications):
                raise HistoError(
                    f"the model needs magnifications {wanted}; features have {features.magnifications}"
                )
            record = json.loads((fold_dir / "metrics.json").read_text())
            result = predict(model, dataset, 1 if keep_attention else 8, device, keep=("attention",))
            per_fold.append(_fold_outputs(task, result.logits, record.get("train_median_risk")))
            if keep_attention:
                for i, patient in enumerate(ids):
                    for batch_attention in result.extras.get("attention", [])[i : i + 1]:
                        for mag, weights in batch_attention.items():
                            if isinstance(weights, torch.Tensor) and weights.dim() == 2:
                                attention.setdefault((patient, mag), []).append(weights[0].cpu().numpy())
        frame = pd.DataFrame({"id": ids, "folds": len(per_fold)})
        means = {key: np.mean([f[key] for f in per_fold], axis=0) for key in per_fold[0]}
        add_output_columns(frame, task, means)
        if "probabilities" in means:
            names = class_names(task, means["probabilities"].shape[1])
            frame["predicted_class"] = [names[i] for i in means["probabilities"].argmax(1)]
        if "risk_centred" in frame:
            frame["risk_group"] = np.where(frame["risk_centred"] > 0, "high", "low")
        if keep_attention:
            _save_attention(ctx.out_dir / "attention", attention, groups, features)
        return frame

    slides = run({s: [s] for s in slide_ids}, keep_attention=True).rename(columns={"id": "slide_id"})
    patients = run(_patients(config.patients, slide_ids), keep_attention=False).rename(
        columns={"id": "patient_id"}
    )
    write_csv(slides, ctx.out_dir / "slide_predictions.csv")
    write_csv(patients, ctx.out_dir / "patient_predictions.csv")
    return slides, patients


def _save_attention(
    folder: Path,
    attention: dict[Any, list[np.ndarray]],
    groups: dict[str, list[str]],
    features: SlideFeatures,
) -> None:
    """Per slide and magnification: patch coords and the fold-mean attention (for heatmaps)."""
    folder.mkdir(parents=True, exist_ok=True)
    by_slide: dict[str, dict[str, np.ndarray]] = {}
    for (slide, mag), maps in attention.items():
        _, coords = features.patient_bag(groups[slide], mag)
        weights = np.mean(maps, axis=0)[: len(coords)]
        by_slide.setdefault(slide, {})[f"{mag}_coords"] = coords
        by_slide[slide][f"{mag}_attention"] = weights
    for slide, arrays in by_slide.items():
        from histo.io import atomic_path

        with atomic_path(folder / f"{slide}.npz") as tmp, tmp.open("wb") as fh:
            np.savez_compressed(fh, **arrays)
    write_json_atomic(folder / "index.json", sorted(by_slide))
