"""The fit loop: optimiser and schedule from the recipe, accumulation, selection on validation only,
atomic checkpoints, exact resume, and DDP under torchrun."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset

from histo.io import atomic_path

from .collate import collate, to_device
from .config import LoopConfig, OptimConfig
from .dataset import PatientDataset
from .heap import model_heap
from .stream import PatientStream

Items = PatientDataset | PatientStream


@dataclass
class FitResult:
    best_epoch: int
    best_score: float
    metric: str
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int | None = None


@dataclass
class Predictions:
    patient_ids: list[str]
    logits: np.ndarray
    targets: np.ndarray
    extras: dict[str, Any] = field(default_factory=dict)


def make_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.name == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.name == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def make_schedule(
    optimizer: torch.optim.Optimizer, config: OptimConfig, epochs: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch learning-rate factor: linear warm-up, then cosine / constant / step."""

    def factor(epoch: int) -> float:
        if config.schedule == "cosine_steps":  # `epoch` counts optimiser steps here (see fit)
            return 0.5 * (1 + math.cos(math.pi * epoch / config.period_steps))
        if epoch < config.warmup_epochs:
            return (epoch + 1) / (config.warmup_epochs + 1)
        if config.schedule == "cosine":
            span = max(1, epochs - config.warmup_epochs)
            return 0.5 * (1 + math.cos(math.pi * (epoch - config.warmup_epochs) / span))
        if config.schedule == "step":
            return config.gamma ** ((epoch - config.warmup_epochs) // config.step_size)
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def default_metric(task: Any) -> str:
    return "c_index" if getattr(task, "is_survival", False) or hasattr(task, "bin_edges") else "auc"


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@torch.no_grad()
@model_heap()  # large bags' activations reused between passes, not re-faulted (heap.py)
def predict(
    model: nn.Module,
    dataset: Items,
    batch_size: int,
    device: torch.device,
    keep: tuple[str, ...] = (),
) -> Predictions:
    """Logits for every item, in dataset order; `keep` names extra outputs to collect (e.g. attention).

    A stream yields in shard order; its predictions are put back in `dataset.patients` order (extras,
    collected per batch, cannot be, so a stream takes no `keep`).
    """
    streamed = isinstance(dataset, IterableDataset)
    if streamed and keep:
        raise ValueError("extra outputs are collected per batch; predict them from a PatientDataset")
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    ids: list[str] = []
    logits, targets = [], []
    extras: dict[str, list[Any]] = {k: [] for k in keep}
    for batch in loader:
        batch = to_device(batch, device)
        out = model(batch)
        ids += batch["patient_id"]
        logits.append(out["logits"].float().cpu())
        targets.append(batch["target"].cpu())
        for k in keep:
            if k in out:
                extras[k].append(out[k])
    result = Predictions(ids, torch.cat(logits).numpy(), torch.cat(targets).numpy(), extras)
    if streamed:
        position = {p: i for i, p in enumerate(dataset.patients)}
        order = np.argsort([position[p] for p in ids], kind="stable")
        result = Predictions([ids[i] for i in order], result.logits[order], result.targets[order], extras)
    return result


def training_loss(task: Any, out: dict[str, Any], target: torch.Tensor) -> torch.Tensor:
    """Task loss summed over views when the model predicts per magnification, plus its aux loss."""
    views = out.get("view_logits")
    if views:
        loss = sum(
            (task.loss(logits, target) for logits in views.values()), torch.zeros((), device=target.device)
        )
    else:
        loss = task.loss(out["logits"], target)
    if "aux_loss" in out:
        loss = loss + out["aux_loss"]
    return loss


def validation_metrics(task: Any, predictions: Predictions, metric: str) -> dict[str, float]:
    """The validation metrics of one epoch: the task's `selection_metrics(logits, targets, metric)` where
    it has one (a cheaper subset that still holds `metric`), else its full `evaluate`."""
    selection = getattr(task, "selection_metrics", None)
    if callable(selection):
        return dict(selection(predictions.logits, predictions.targets, metric))
    return dict(task.evaluate(predictions.logits, predictions.targets))


def _score(metrics: dict[str, float], metric: str, mode: str) -> float:
    value = metrics.get(metric, float("nan"))
    if value is None or not math.isfinite(value):
        return -math.inf
    return value if mode == "max" else -value


def _update(
    trained: nn.Module,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loop: LoopConfig,
    coordinator: Any,
    out: dict[str, Any],
    target: torch.Tensor,
) -> None:
    """One optimiser step on the accumulated gradients (coordinated and clipped where configured)."""
    if coordinator is not None:
        coordinator.coordinate(_unwrap(trained), out, target)
    if loop.optimizer.grad_clip:
        nn.utils.clip_grad_norm_(model.parameters(), loop.optimizer.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


@model_heap()
def fit(
    model: nn.Module,
    task: Any,
    train: Items,
    val: Items | None,
    loop: LoopConfig,
    out_dir: Path,
    *,
    device: torch.device,
    seed: int,
    log: logging.Logger,
    coordinator: Any = None,
    teacher: nn.Module | None = None,
    distiller: Any = None,
    rank: int = 0,
    world_size: int = 1,
    stop_after: int | None = None,
) -> FitResult:
    """Train, select the epoch with the best validation metric, leave best.pt and last.pt in out_dir.

    `train` may be a `PatientStream`: it shuffles itself from `rng` (reseeded per epoch here) and gives
    each DDP rank an equal share of patients, in place of the shuffling loader / DistributedSampler.

    With `teacher` and `distiller`, the frozen teacher's outputs on the same batch feed the distillation
    loss, which is added to the task loss.

    Without validation patients (`val` None or empty: a refit on a whole training part) nothing is
    selected: the last epoch is kept. `stop_after` ends training after that many epochs while the
    learning-rate schedule still spans `loop.epochs`, so a refit follows the same trajectory as the
    inner models whose curves chose the epoch count.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model.to(device)
    if teacher is not None:
        teacher.to(device).eval()
        teacher.requires_grad_(False)
    optimizer = make_optimizer(model, loop.optimizer)
    schedule = make_schedule(optimizer, loop.optimizer, loop.epochs)
    per_step = loop.optimizer.schedule == "cosine_steps"
    metric = loop.early_stopping.metric or default_metric(task)
    mode = loop.early_stopping.mode or ("min" if metric.endswith("loss") else "max")
    result = FitResult(best_epoch=-1, best_score=-math.inf, metric=metric)
    start_epoch = 0

    last = out_dir / "last.pt"
    if last.exists():
        state = torch.load(last, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch = int(state["epoch"]) + 1
        result.best_epoch, result.best_score = int(state["best_epoch"]), float(state["best_score"])
        result.history = list(state["history"])
        result.resumed_from = start_epoch
        log.info("resuming from epoch %d (%s)", start_epoch, last)

    trained = model
    if world_size > 1:
        trained = nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    stale = 0 if result.best_epoch < 0 else (start_epoch - 1 - result.best_epoch)
    validating = val is not None and len(val) > 0
    end = loop.epochs if stop_after is None else min(stop_after, loop.epochs)
    if validating and loop.early_stopping.patience and stale >= loop.early_stopping.patience:
        end = start_epoch  # resumed after it had already stopped early: nothing left to train
    for epoch in range(start_epoch, end):
        began = time.monotonic()
        train.rng = np.random.default_rng([seed, epoch])  # patch sampling repeats exactly on resume
        generator = torch.Generator().manual_seed(seed * 1009 + epoch)
        sampler: DistributedSampler[dict[str, Any]] | None = None
        streamed = isinstance(train, PatientStream)
        if isinstance(train, PatientStream):
            train.split_ranks(rank, world_size)
        elif world_size > 1:
            sampler = DistributedSampler(train, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
            sampler.set_epoch(epoch)
        loader = DataLoader(
            train,
            batch_size=loop.batch_size,
            shuffle=sampler is None and not streamed,
            sampler=sampler,
            collate_fn=collate,
            generator=None if streamed else generator,
            num_workers=loop.num_workers,
            pin_memory=device.type == "cuda",
            drop_last=len(train) > loop.batch_size and len(train) % loop.batch_size == 1,
        )
        trained.train()
        optimizer.zero_grad(set_to_none=True)
        losses = []
        step: int = 0  # step, out and batch are read after the loop: the last, partial accumulation
        out: dict[str, Any] = {}
        batch: dict[str, Any] = {}
        for step, batch in enumerate(loader, 1):
            batch = to_device(batch, device)
            out = trained(batch)
            loss = training_loss(task, out, batch["target"])
            if teacher is not None and distiller is not None:
                with torch.no_grad():
                    teacher_out = teacher(batch)
                loss = loss + distiller(out, teacher_out)
            (loss / loop.accumulate).backward()
            losses.append(float(loss.detach()))
            if step % loop.accumulate == 0:
                _update(trained, model, optimizer, loop, coordinator, out, batch["target"])
                if per_step:
                    schedule.step()
        if step % loop.accumulate:  # the last, partial accumulation (a stream's length is not known ahead)
            _update(trained, model, optimizer, loop, coordinator, out, batch["target"])
            if per_step:
                schedule.step()
        if not per_step:
            schedule.step()

        val_metrics: dict[str, float] = {}
        if validating:
            assert val is not None
            val_pred = predict(model, val, loop.batch_size, device)
            val_metrics = validation_metrics(task, val_pred, metric)
            with torch.no_grad():
                val_metrics["loss"] = float(
                    task.loss(torch.from_numpy(val_pred.logits), torch.from_numpy(val_pred.targets))
                )
        score = _score(val_metrics, metric, mode)
        later = loop.early_stopping.ties == "later"  # small validation sets tie often (AUC on 10 patients)
        improved = (
            not validating
            or score > result.best_score
            or (later and score == result.best_score)
            or result.best_epoch < 0
        )
        if improved:
            result.best_epoch, result.best_score = epoch, score
            stale = 0
            if rank == 0:
                with atomic_path(out_dir / "best.pt") as tmp:
                    torch.save({"model": _unwrap(model).state_dict(), "epoch": epoch}, tmp)
        else:
            stale += 1
        record = {
            "epoch": epoch,
            "train_loss": float(np.mean(losses)) if losses else float("nan"),
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": round(time.monotonic() - began, 3),
            **{f"val_{k}": v for k, v in val_metrics.items()},
        }
        result.history.append(record)
        log.debug(
            "epoch %d: train loss %.4f, val %s %.4f%s",
            epoch,
            record["train_loss"],
            metric,
            val_metrics.get(metric, float("nan")),
            " *" if improved else "",
        )
        if rank == 0:
            with atomic_path(last) as tmp:
                torch.save(
                    {
                        "model": _unwrap(model).state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "schedule": schedule.state_dict(),
                        "torch_rng": torch.get_rng_state(),
                        "epoch": epoch,
                        "best_epoch": result.best_epoch,
                        "best_score": result.best_score,
                        "history": result.history,
                    },
                    tmp,
                )
        if world_size > 1:
            import torch.distributed as dist

            dist.barrier()
        if validating and loop.early_stopping.patience and stale >= loop.early_stopping.patience:
            log.info("early stopping: no better validation %s for %d epochs", metric, stale)
            break

    best = torch.load(out_dir / "best.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(best["model"])
    return result
