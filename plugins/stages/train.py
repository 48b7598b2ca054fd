"""The `train` stage: cross-validated training of any composition of plugins (omics only, WSI only,
both; optionally distilled from an earlier train stage's models), evaluated honestly.

Everything fitted (scalers, gene filters, survival bins, class weights) is fitted on each fold's
training patients; epochs are selected on its validation patients; metrics are reported on its test
patients only. Writes, in its folder:
    stage_config.json      the resolved config (a later stage rebuilds the models from it)
    cohort_report.json     patients, slides, classes/events, who lacks which modality, exclusions
    splits/splits_<k>.csv  the patient splits used (train, val, test)
    folds/<k>/             best.pt, last.pt, model.json, history.json, test_predictions.csv, metrics.json
                           (+ selection.json with the inner curves, unless `training.selection` is the
                           plain holdout; best.pt then may hold an ensemble)
    attention/<slide>.npz  each test patient's patch attention from its fold's model (WSI models)
    predictions.csv        out-of-fold predictions of every patient
    metrics.json           test metrics per fold, with mean and std over folds
    km_risk_groups.png | roc.png, confusion.png
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from histo import ComponentSpec
from histo.errors import HistoError
from histo.interfaces import Stage, StageContext
from histo.io import write_json_atomic
from histo.plugins.cohort import CohortConfig, OmicsConfig, SplitConfig
from histo.plugins.training.config import LoopConfig, ModelConfig, resolve_selection
from histo.plugins.training.inputs import FeaturesConfig
from histo.recipe import DistillerRef, GradientCoordinatorRef, StageRef, TaskRef


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cohort: CohortConfig = Field(description="the cohort table: patients, slides, labels, survival")
    omics: OmicsConfig | None = Field(None, description="expression table and gene groups (omics models)")
    features: FeaturesConfig | None = Field(None, description="patch features (WSI models)")
    task: TaskRef = Field(description="what to predict: classification or survival (see `histo plugins`)")
    model: ModelConfig = Field(description="slide encoder, omics encoder and/or fusion")
    coordinator: GradientCoordinatorRef | None = Field(
        None, description="gradient coordination after backward"
    )
    splits: SplitConfig = Field(default_factory=SplitConfig, description="cross-validation folds")
    training: LoopConfig = Field(
        default_factory=LoopConfig, description="epochs, batch, optimiser, selection"
    )
    data_from: StageRef | None = Field(
        None,
        description="an earlier stage whose folder holds the tables (e.g. synthesize): relative paths in "
        "cohort, omics and splits are read from there",
    )
    init_from: StageRef | None = Field(
        None,
        description="an earlier train stage with the same model: each fold starts from its checkpoint "
        "(its splits are reused), e.g. distilling into an already trained student",
    )
    teacher: StageRef | None = Field(
        None, description="an earlier train stage to distil from, fold by fold (its splits are reused)"
    )
    distiller: DistillerRef | None = Field(None, description="the distillation loss (with `teacher`)")
    attention_maps: bool = Field(
        True,
        description="save each test patient's patch attention, from the fold that tested it, as "
        "attention/<slide>.npz (a teacher's per gene group too) for the heatmaps stage; bag files only, "
        "not with `features.source: shards`",
    )


class TrainStage(Stage[TrainConfig]):
    version = "3"  # 3: dmf / dmf_student default to preset: reference (a recipe without one changed)

    def check_inputs(self) -> list[tuple[tuple[str | int, ...], str]]:
        from histo.plugins.training.preflight import check_train_inputs

        return check_train_inputs(self.config)

    def run(self, ctx: StageContext) -> None:
        import pandas as pd

        from histo.plugins.cohort import export_splits, make_splits, splits_summary
        from histo.plugins.training.folds import load_model
        from histo.plugins.training.inputs import load_inputs
        from histo.plugins.training.outputs import plots, prediction_frame, write_csv, write_metrics
        from histo.plugins.training.selection import FoldSetup, clean_members, run_fold

        config = self.config
        if (config.teacher is None) != (config.distiller is None):
            raise HistoError("`teacher` and `distiller` go together: set both to distil, or neither")
        if config.data_from is not None:
            config = _rebase(config, ctx.stage_dir(config.data_from))
        task = config.task.build()
        omics_config = config.omics
        teacher_dir = ctx.stage_dir(config.teacher) if config.teacher else None
        if teacher_dir is not None and omics_config is None:
            omics_config = _teacher_config(teacher_dir).omics  # the teacher needs its own inputs
        inputs = load_inputs(config.cohort, omics_config, config.features, task, ctx)
        if ctx.is_main:
            write_json_atomic(ctx.out_dir / "stage_config.json", config.model_dump(mode="json"))
            write_json_atomic(ctx.out_dir / "cohort_report.json", inputs.report)
            ctx.add_artifact(
                ctx.out_dir / "cohort_report.json", "cohort report: patients, modalities, exclusions"
            )

        split_config = config.splits
        init_dir = ctx.stage_dir(config.init_from) if config.init_from else None
        reuse = teacher_dir or init_dir
        if reuse is not None:  # same test patients as the models it builds on, or their knowledge leaks
            split_config = split_config.model_copy(update={"files": reuse / "splits", "seed": None})
            if teacher_dir is not None and init_dir is not None:
                _same_splits(teacher_dir, init_dir)
        loop = resolve_selection(config.training, len(inputs.labels))
        if loop.selection.protocol != "holdout":  # validation comes from inner splits instead
            split_config = split_config.model_copy(update={"val_fraction": 0.0})
        folds = make_splits(inputs.labels, split_config, inputs.label_column, seed=ctx.seed)
        if ctx.is_main:
            export_splits(folds, ctx.out_dir / "splits")
            write_json_atomic(ctx.out_dir / "splits" / "summary.json", splits_summary(folds))

        coordinator = config.coordinator.build() if config.coordinator else None
        distiller = config.distiller.build() if config.distiller else None
        per_fold: list[dict[str, Any]] = []
        frames = []
        for fold in ctx.progress(folds, description=f"{ctx.stage_id}: folds"):
            fold_dir = ctx.out_dir / "folds" / str(fold.index)
            done = fold_dir / "metrics.json"
            if done.exists():  # a resumed run: this fold finished before the interruption
                per_fold.append(json.loads(done.read_text()))
                frames.append(pd.read_csv(fold_dir / "test_predictions.csv"))
                continue
            fold_dir.mkdir(parents=True, exist_ok=True)
            teacher = None
            if teacher_dir is not None:
                teacher, card = load_model(teacher_dir / "folds" / str(fold.index), ctx.device)
                _single_teacher(teacher_dir, card)
            setup = FoldSetup(
                inputs, task, config.model, loop, omics_config and omics_config.preprocess,
                split_config, coordinator=coordinator, teacher=teacher, distiller=distiller,
                init=init_dir / "folds" / str(fold.index) / "best.pt" if init_dir else None,
            )  # fmt: skip
            outcome = run_fold(setup, fold, fold_dir, ctx)
            test, metrics = outcome.test, outcome.metrics
            frame = prediction_frame(task, test.patient_ids, test.logits, test.targets, fold.index)
            if "risk" in frame and test.extras.get("train_median_risk") is not None:
                frame["risk_centred"] = frame["risk"] - test.extras["train_median_risk"]
            record = {
                "fold": fold.index,
                "n_train": len(fold.train), "n_val": len(fold.val), "n_test": len(fold.test),
                "best_epoch": outcome.best_epoch, "selected_on": outcome.selected_on,
                "selection": outcome.selection, "test": metrics, "notes": list(getattr(task, "notes", [])),
                "train_median_risk": test.extras.get("train_median_risk"),
            }  # fmt: skip
            if ctx.is_main:
                if config.attention_maps and _random_access(inputs.features):
                    _write_attention(fold_dir, outcome.data.test, ctx)
                write_json_atomic(fold_dir / "history.json", outcome.history)
                write_csv(frame, fold_dir / "test_predictions.csv")
                write_json_atomic(done, record)  # last: its presence means the fold is complete
                clean_members(fold_dir)
            ctx.log.info("%s fold %d: %s", ctx.stage_id, fold.index, _brief(metrics))
            per_fold.append(record)
            frames.append(frame)

        predictions = pd.concat(frames, ignore_index=True)
        if not ctx.is_main:
            return
        write_csv(predictions, ctx.out_dir / "predictions.csv")
        if (ctx.out_dir / "attention").is_dir():
            from histo.plugins.training.attention_maps import write_index

            write_index(ctx.out_dir / "attention")
            ctx.add_artifact(ctx.out_dir / "attention", "out-of-fold patch attention per slide (heatmaps)")
        from histo.plugins.evaluation.bootstrap import pooled_summary

        pooled = pooled_summary(predictions, seed=ctx.seed)  # the out-of-fold metric with a bootstrap CI
        extra = {"task": config.task.name, "pooled": pooled}
        metrics = write_metrics(ctx.out_dir / "metrics.json", per_fold, extra)
        ctx.add_artifact(ctx.out_dir / "predictions.csv", "out-of-fold predictions")
        ctx.add_artifact(ctx.out_dir / "metrics.json", "test metrics per fold, mean and std")
        for name, description in plots(task, predictions, ctx.out_dir, config.cohort.time_unit).items():
            ctx.add_artifact(ctx.out_dir / name, description)
        ctx.add_metrics(**{k: round(v["mean"], 4) for k, v in metrics["summary"].items()},
                        folds=len(folds), patients=len(inputs.labels))  # fmt: skip


def _random_access(features: Any) -> bool:
    """Whether attention maps can be cut back into slides: bag files, not a stream of shards."""
    from histo.plugins.training.bags import SlideFeatures

    return isinstance(features, SlideFeatures)


def _write_attention(fold_dir: Path, test: Any, ctx: StageContext) -> None:
    """The fold's selected model on its test patients' whole bags: attention/<slide>.npz."""
    import torch

    from histo.plugins.training.attention_maps import write_attention
    from histo.plugins.training.folds import load_model

    device = torch.device(ctx.device)
    model, _ = load_model(fold_dir, device)
    write_attention(model, test, ctx.out_dir / "attention", device)


def _rebase(model: Any, base: Path) -> Any:
    """A copy of `model` whose relative paths (in cohort, omics, splits) point into `base`."""
    if isinstance(model, Path):
        return model if model.is_absolute() else base / model
    if isinstance(model, list):
        return [_rebase(item, base) for item in model]
    if isinstance(model, dict):
        return {key: _rebase(item, base) for key, item in model.items()}
    if isinstance(model, BaseModel) and not hasattr(model, "kind"):  # components keep their own params
        update = {name: _rebase(getattr(model, name), base) for name in type(model).model_fields}
        update = {k: v for k, v in update.items() if k not in ("features", "teacher", "data_from")}
        return model.model_copy(update=update)
    return model


def _single_teacher(teacher_dir: Path, card: dict[str, Any]) -> None:
    """Distillers match the student to the teacher's embeddings, and the embeddings of separately
    trained models live in different spaces: an average of them is no teacher."""
    members = int(card.get("members", 1))
    if members > 1:
        raise HistoError(
            f"the teacher {teacher_dir.name!r} saved an average of {members} models per fold (training."
            "selection.final: ensemble, the default for small cohorts); their embeddings cannot be "
            "averaged for distillation. Give the teacher stage `training.selection: {final: refit}` "
            "(or `protocol: holdout`) so that each fold keeps one model"
        )


def _same_splits(a: Path, b: Path) -> None:
    for path in sorted((a / "splits").glob("splits_*.csv")):
        other = b / "splits" / path.name
        if not other.exists() or other.read_bytes() != path.read_bytes():
            raise HistoError(
                f"{a} and {b} were trained on different splits ({path.name}); they cannot be combined"
            )


def _teacher_config(teacher_dir: Path) -> TrainConfig:
    from histo.recipe import resolve_config

    path = teacher_dir / "stage_config.json"
    if not path.exists():
        raise HistoError(f"{teacher_dir} is not a finished train stage (no stage_config.json)")
    return resolve_config(TrainConfig, json.loads(path.read_text()), label=str(path))


def _brief(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float))


SPEC = ComponentSpec(
    "train",
    TrainStage,
    TrainConfig,
    "cross-validated training and honest evaluation of omics, WSI or multi-modal models (or distilled)",
)
