"""Model selection inside one outer fold's training part: a single validation carve-out (`holdout`),
inner K-fold CV (`inner_cv`) or K random carve-outs (`repeated`); then either the epoch with the best
mean inner validation curve, retrained on the whole training part (`refit`, fixed-epoch mode), or the
inner models kept and averaged (`ensemble`); `seeds` > 1 averages models trained from several seeds.

Why: one 20% carve-out of a 200-patient training part holds ~40 patients and ~15 events, so the epoch
it selects is mostly noise (docs/results-tcga-stad.md). The test fold never enters any of this.
"""

from __future__ import annotations

import math
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from histo.errors import HistoError
from histo.interfaces import StageContext
from histo.io import write_json_atomic
from histo.plugins.cohort import Fold, SplitConfig, make_splits

from .assemble import Ensemble
from .config import LoopConfig, ModelConfig, SelectionConfig
from .folds import FoldData, evaluate_fold, prepare_fold, save_model_card, train_fold
from .inputs import TrainingInputs
from .trainer import FitResult, Predictions, default_metric, fit


@dataclass
class FoldSetup:
    """What every model of a fold is built and trained from."""

    inputs: TrainingInputs
    task: Any
    model: ModelConfig
    loop: LoopConfig
    preprocess: Any
    splits: SplitConfig
    coordinator: Any = None
    teacher: nn.Module | None = None
    distiller: Any = None
    init: Path | None = None


@dataclass
class Outcome:
    test: Predictions
    metrics: dict[str, float]
    best_epoch: int | None
    selected_on: str
    data: FoldData  # the outer fold's datasets (its test part is what attention maps are drawn on)
    selection: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


def inner_splits(
    part: list[str], setup: FoldSetup, selection: SelectionConfig, seed: int
) -> list[tuple[list[str], list[str]]]:
    """(train, validation) pairs inside `part`, stratified and grouped as the stage's folds are."""
    patients = setup.inputs.labels.loc[part]
    base = setup.splits.model_copy(update={"files": None, "val_fraction": 0.0, "seed": None})
    try:
        if selection.protocol == "inner_cv":
            folds = make_splits(patients, base.model_copy(update={"folds": selection.folds}),
                                setup.inputs.label_column, seed)  # fmt: skip
            return [(f.train, f.test) for f in folds]
        share = max(2, round(1 / selection.val_fraction))
        pairs = []
        for r in range(selection.folds):  # a fresh shuffle per carve-out, its first fold held out
            first = make_splits(patients, base.model_copy(update={"folds": share}),
                                setup.inputs.label_column, seed * 1000 + r)[0]  # fmt: skip
            pairs.append((first.train, first.test))
        return pairs
    except HistoError as exc:
        raise HistoError(
            f"training.selection ({selection.protocol}, {selection.folds} splits of {len(part)} training "
            f"patients): {exc}; lower training.selection.folds or set training.selection.protocol: holdout"
        ) from None


def choose_epoch(curves: list[list[float]], mode: str, ties: str) -> tuple[int, float]:
    """The epoch whose validation metric, averaged over the inner models, is best (NaNs skipped).

    Only epochs that every inner model reached count: a model stops `patience` epochs after its own
    best, so a later epoch would be averaged over the slower models alone."""
    common = min(len(c) for c in curves)
    mean = np.asarray(_mean([c[:common] for c in curves]))
    score = np.where(np.isfinite(mean), mean if mode == "max" else -mean, -np.inf)
    best = np.flatnonzero(score >= score.max() - 1e-12)
    epoch = int(best[-1] if ties == "later" else best[0])
    return epoch, float(mean[epoch])


def _curve(result: FitResult) -> list[float]:
    key = f"val_{result.metric}"
    values = [h.get(key) for h in result.history]
    return [float(v) if isinstance(v, int | float) and math.isfinite(v) else math.nan for v in values]


def _member_seed(base: int, split: int, seed: int) -> int:
    return base + 7919 * split + 1_000_003 * seed


def _fit_one(
    setup: FoldSetup, data: FoldData, loop: LoopConfig, out_dir: Path, seed: int, ctx: StageContext,
    stop_after: int | None = None,
) -> tuple[nn.Module, FitResult]:  # fmt: skip
    torch.manual_seed(seed)
    from .assemble import build_model

    model = build_model(setup.model, data.dims)
    if setup.init is not None and not (out_dir / "last.pt").exists():
        state = torch.load(setup.init, map_location="cpu", weights_only=True)["model"]
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise HistoError(f"cannot start from {setup.init}: the model differs from the one saved there: "
                             f"{exc}") from None  # fmt: skip
    val = data.val if stop_after is None else None
    result = fit(
        model, setup.task, data.train, val, loop, out_dir, device=torch.device(ctx.device), seed=seed,
        log=ctx.log, coordinator=setup.coordinator, teacher=setup.teacher, distiller=setup.distiller,
        rank=ctx.rank, world_size=ctx.world_size, stop_after=stop_after,
    )  # fmt: skip
    return model, result


def _prepare(setup: FoldSetup, fold: Fold, seed: int, fit_on: list[str] | None = None) -> FoldData:
    inputs, loop = setup.inputs, setup.loop
    return prepare_fold(fold, inputs, setup.task, loop, setup.preprocess, seed=seed, fit_on=fit_on)


def run_fold(setup: FoldSetup, fold: Fold, fold_dir: Path, ctx: StageContext) -> Outcome:
    """Select, train and test one outer fold as `setup.loop.selection` says; leaves best.pt (one model
    or an `Ensemble`), model.json and selection.json in `fold_dir`."""
    selection = setup.loop.selection
    base_seed = ctx.seed * 100 + fold.index
    metric = setup.loop.early_stopping.metric or default_metric(setup.task)
    mode = setup.loop.early_stopping.mode or ("min" if metric.endswith("loss") else "max")
    if selection.protocol == "holdout" and selection.seeds == 1:  # the plain path, as it always was
        data = _prepare(setup, fold, ctx.seed)
        result, test, metrics = train_fold(
            fold, data, setup.task, setup.model, setup.loop, fold_dir, ctx, coordinator=setup.coordinator,
            teacher=setup.teacher, distiller=setup.distiller, init=setup.init,
        )  # fmt: skip
        return Outcome(test, metrics, result.best_epoch, f"val_{result.metric}", data,
                       {"protocol": "holdout", "members": 1}, result.history)  # fmt: skip

    work = fold_dir / "members"
    members: list[nn.Module] = []
    record: dict[str, Any] = {"protocol": selection.protocol, "metric": metric, "seeds": selection.seeds}
    if selection.protocol == "holdout":
        reference = _prepare(setup, fold, ctx.seed)
        results = []
        for s in range(selection.seeds):
            model, result = _fit_one(setup, reference, setup.loop, work / f"seed{s}",
                                     _member_seed(base_seed, 0, s), ctx)  # fmt: skip
            members.append(model)
            results.append(result)
        epochs = [r.best_epoch for r in results]
        record.update(final="ensemble", members=len(members), epochs=epochs,
                      histories=[r.history for r in results])  # fmt: skip
        best_epoch = epochs[0] if len(set(epochs)) == 1 else None
        selected_on = f"val_{metric} ({selection.seeds} seeds averaged)"
        history = results[0].history
    else:
        part = sorted(fold.train + fold.val)
        pairs = inner_splits(part, setup, selection, base_seed)
        refit = selection.final == "refit"
        inner: list[dict[str, Any]] = []
        curves = []
        for i, (train, val) in enumerate(pairs):
            data = _prepare(setup, Fold(fold.index, train, val, fold.test), ctx.seed, fit_on=part)
            for s in range(selection.seeds):
                model, result = _fit_one(setup, data, setup.loop, work / f"inner{i}-seed{s}",
                                         _member_seed(base_seed, i + 1, s), ctx)  # fmt: skip
                curves.append(_curve(result))
                inner.append({"split": i, "seed": s, "n_train": len(train), "n_val": len(val),
                              "best_epoch": result.best_epoch, "history": result.history})  # fmt: skip
                if not refit:
                    members.append(model)
        epoch, score = choose_epoch(curves, mode, setup.loop.early_stopping.ties)
        record.update(final=selection.final, splits=len(pairs), inner=inner,
                      curve=[round(v, 6) if math.isfinite(v) else None for v in _mean(curves)],
                      epoch=epoch, score=score)  # fmt: skip
        reference = _prepare(setup, Fold(fold.index, part, [], fold.test), ctx.seed, fit_on=part)
        history = inner[0]["history"]
        if refit:
            for s in range(selection.seeds):
                seed = _member_seed(base_seed, 0, s)
                model, result = _fit_one(setup, reference, setup.loop, work / f"refit-seed{s}", seed, ctx,
                                         stop_after=epoch + 1)  # fmt: skip
                members.append(model)
                history = result.history if s == 0 else history
            best_epoch: int | None = epoch
            selected_on = (f"the mean val_{metric} of {len(pairs)} {selection.protocol} splits of its "
                           "training part, then a refit on the whole training part")  # fmt: skip
        else:
            best_epoch = None
            selected_on = (f"val_{metric} of {len(members)} {selection.protocol} models, each on its own "
                           "validation part of the training part, their outputs averaged")  # fmt: skip
        record["members"] = len(members)

    final = members[0] if len(members) == 1 else Ensemble(members)
    final.eval()
    test, metrics = evaluate_fold(final, reference, setup.task, setup.loop, torch.device(ctx.device))
    if ctx.is_main:
        save_model_card(fold_dir / "model.json", setup.model, reference.dims, reference.omics_groups,
                        members=len(members))  # fmt: skip
        from histo.io import atomic_path

        with atomic_path(fold_dir / "best.pt") as tmp:
            torch.save({"model": final.state_dict(), "epoch": best_epoch}, tmp)
        write_json_atomic(fold_dir / "selection.json", record)
    return Outcome(test, metrics, best_epoch, selected_on, reference, _brief(record), history)


def _mean(curves: list[list[float]]) -> list[float]:
    length = max(len(c) for c in curves)
    grid = np.full((len(curves), length), np.nan)
    for i, curve in enumerate(curves):
        grid[i, : len(curve)] = curve
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an epoch no inner model scored
        return [float(v) for v in np.nanmean(grid, axis=0)]


def _brief(record: dict[str, Any]) -> dict[str, Any]:
    """The selection summary kept in the fold's metrics.json (curves stay in selection.json)."""
    keys = ("protocol", "final", "metric", "splits", "seeds", "members", "epoch", "score", "epochs")
    return {k: record[k] for k in keys if k in record}


def clean_members(fold_dir: Path) -> None:
    """Drop the members' checkpoints once the fold is complete: best.pt holds them all."""
    shutil.rmtree(fold_dir / "members", ignore_errors=True)
