"""Configs of the training engine, embedded in the train stage's config."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from histo.recipe import FusionStrategyRef, OmicsEncoderRef, SlideEncoderRef


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Config):
    """Which components make the model. WSI only: slide_encoder. Omics only: omics_encoder.
    Both modalities: a fusion (which may use the two encoders, as `concat` does)."""

    slide_encoder: SlideEncoderRef | None = None
    omics_encoder: OmicsEncoderRef | None = None
    fusion: FusionStrategyRef | None = None


class OptimConfig(_Config):
    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    momentum: float = Field(0.9, ge=0, description="sgd only")
    schedule: Literal["cosine", "constant", "step", "cosine_steps"] = Field(
        "cosine",
        description="learning-rate schedule per epoch (cosine to 0 over the epochs, constant, step), or "
        "'cosine_steps': stepped after every optimiser step with period `period_steps`, as the paper's "
        "released code does (CosineAnnealingLR(T_max=10) stepped per batch: a 20-step cycle)",
    )
    period_steps: int = Field(
        10, ge=1, description="cosine_steps only: optimiser steps from the top of the cosine to 0"
    )
    warmup_epochs: int = Field(0, ge=0)
    step_size: int = Field(10, ge=1, description="epochs between decays, step schedule only")
    gamma: float = Field(0.1, gt=0, description="decay factor, step schedule only")
    grad_clip: float | None = Field(None, gt=0, description="clip the gradient norm to this value")


class EarlyStoppingConfig(_Config):
    metric: str | None = Field(
        None, description="validation metric to select on (default: c_index for survival, auc otherwise)"
    )
    mode: Literal["max", "min"] | None = Field(None, description="default: min for *loss, max otherwise")
    patience: int | None = Field(None, ge=1, description="stop after this many epochs without improvement")
    ties: Literal["later", "earlier"] = Field(
        "later",
        description="which epoch a tie in the validation metric selects: the later (more trained) one, or "
        "the earlier; a tie also resets the patience count when `later`",
    )


class SelectionConfig(_Config):
    """How each outer fold picks its epoch and which model(s) it keeps. The test fold is never used:
    every protocol works inside the fold's training part (docs/tasks.md, "Model selection")."""

    protocol: Literal["auto", "holdout", "inner_cv", "repeated"] = Field(
        "auto",
        description="`holdout`: one validation carve-out (`splits.val_fraction`), early stopping on it. "
        "`inner_cv`: K-fold CV inside the fold's training part; `repeated`: K random validation "
        "carve-outs of `val_fraction` (both stratified and grouped like the folds). `auto`: `inner_cv` "
        "for a cohort of fewer than `small_cohort` usable patients, else `holdout`",
    )
    small_cohort: int = Field(
        500, ge=0, description="with `auto`: cohorts with fewer usable patients than this use `inner_cv`"
    )
    folds: int = Field(5, ge=2, description="inner folds (inner_cv) or validation carve-outs (repeated)")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="validation share of each carve-out (repeated)")
    final: Literal["refit", "ensemble"] = Field(
        "ensemble",
        description="inner_cv / repeated only. `refit`: the epoch with the best mean validation curve of "
        "the inner models (over the epochs all of them reached before their early stopping), then the "
        "model retrained on the whole training part for that many epochs (fixed-epoch mode). "
        "`ensemble`: keep the inner models, each early-stopped on its own validation part, and average "
        "their outputs",
    )
    seeds: int = Field(
        1, ge=1, description="train this many models with different seeds and average their outputs"
    )


def resolve_selection(loop: LoopConfig, patients: int) -> LoopConfig:
    """`loop` with `selection.protocol: auto` replaced by what it means for a cohort of `patients`."""
    selection = loop.selection
    if selection.protocol != "auto":
        return loop
    protocol = "inner_cv" if patients < selection.small_cohort else "holdout"
    return loop.model_copy(update={"selection": selection.model_copy(update={"protocol": protocol})})


class LoopConfig(_Config):
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(8, ge=1, le=65536)
    accumulate: int = Field(1, ge=1, description="optimiser step every N batches (effective batch x N)")
    max_patches: int | None = Field(
        None, ge=1, description="subsample larger bags to this many patches (random when training)"
    )
    num_workers: int = Field(0, ge=0, description="DataLoader workers (bags are small in memory: 0 is fine)")
    optimizer: OptimConfig = OptimConfig()
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    selection: SelectionConfig = Field(
        default_factory=SelectionConfig,
        description="epoch selection protocol (holdout, inner CV, repeated splits), refit or ensemble, seeds",
    )
