"""The `classical` stage: one classical model (kind `classical_models`: Coxnet, logistic regression,
random survival forest, ...) cross-validated on exactly the folds, preprocessing and exclusions of the
deep models, with the same output files, so `compare` and the report treat it like any train stage.

`like: <train stage>` takes that stage's cohort, expression table (with its per-fold preprocessing),
features, task and exported splits as they are; otherwise the stage is configured like `train`.
Hyperparameters are chosen by inner cross-validation on each fold's training part (stratified by label
or event); the validation patients are left out (`fit_on: train`, the deep models' training rows) or
added to the training part (`fit_on: train_val`); test patients are only predicted. Writes:
    stage_config.json, cohort_report.json, splits/splits_<k>.csv
    folds/<k>/model.json        chosen hyperparameters, every candidate's inner-CV scores, inputs used
    folds/<k>/test_predictions.csv, folds/<k>/metrics.json
    predictions.csv, metrics.json (per fold, mean and std, pooled out-of-fold with bootstrap CIs), plots
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from histo import ComponentSpec
from histo.errors import HistoError
from histo.interfaces import Stage, StageContext
from histo.io import write_json_atomic
from histo.plugins.cohort import CohortConfig, OmicsConfig, SplitConfig
from histo.plugins.training.inputs import FeaturesConfig
from histo.recipe import ClassicalModelRef, StageRef, TaskRef


class InnerCVConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    folds: int = Field(5, ge=2, description="inner folds on each outer fold's training part")
    seed: int | None = Field(
        None, description="seed of the inner shuffles (outer fold k uses seed + k); default: the recipe's"
    )


class ClassicalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: ClassicalModelRef = Field(description="the classical model (see `histo plugins`)")
    like: StageRef | None = Field(
        None,
        description="a train stage whose cohort, omics (and preprocessing), features, task and splits are "
        "used as they are: the same patients, folds and exclusions as its deep model",
    )
    inputs: Literal["omics", "slides", "both"] | None = Field(
        None,
        description="what the model sees: the expression table, slide features mean-pooled per patient "
        "(per magnification), or both; default: every input configured (or of the `like` stage)",
    )
    cohort: CohortConfig | None = Field(None, description="the cohort table (without `like`)")
    omics: OmicsConfig | None = Field(None, description="expression table and preprocessing (without `like`)")
    features: FeaturesConfig | None = Field(None, description="patch features (without `like`)")
    task: TaskRef | None = Field(None, description="classification or survival (without `like`)")
    splits: SplitConfig = Field(default_factory=SplitConfig, description="outer folds (without `like`)")
    data_from: StageRef | None = Field(
        None, description="an earlier stage whose folder holds the tables (e.g. synthesize)"
    )
    inner_cv: InnerCVConfig = Field(
        default_factory=InnerCVConfig, description="hyperparameter selection on each training part"
    )
    fit_on: Literal["train", "train_val"] = Field(
        "train",
        description="`train`: the deep models' training rows (validation patients unused); `train_val`: "
        "also the validation patients, which the deep models only select epochs on",
    )
    bootstrap: int = Field(1000, ge=0, description="resamples of the pooled out-of-fold CI (0: none)")
    blas_threads: int | None = Field(
        1,
        ge=1,
        description="BLAS/OpenMP threads while fitting (null: the library default). A cohort's matrices are "
        "small: one thread avoids oversubscribing cores shared with torch and other jobs",
    )


class ClassicalStage(Stage[ClassicalConfig]):
    version = "1"

    def run(self, ctx: StageContext) -> None:
        import pandas as pd

        from histo.plugins.classical.design import pooled_slide_features
        from histo.plugins.cohort import export_splits, make_splits, splits_summary
        from histo.plugins.evaluation.bootstrap import pooled_summary
        from histo.plugins.training.inputs import load_inputs
        from histo.plugins.training.outputs import plots, write_csv, write_metrics

        config, split_config = self._resolved(ctx)
        assert config.cohort is not None and config.task is not None
        base_task = config.task.build()
        kind = task_kind(base_task)
        task = _cox_view(base_task) if kind == "survival" else base_task
        model = config.model.build()
        if kind not in getattr(model, "tasks", ()):
            raise HistoError(
                f"classical model {config.model.name!r} fits {', '.join(model.tasks)} tasks, not {kind}; "
                "pick another model (`histo plugins` lists them)"
            )
        inputs = load_inputs(config.cohort, config.omics, config.features, task, ctx)
        use = config.inputs or _default_inputs(config)
        if use in ("omics", "both") and inputs.omics is None:
            raise HistoError(f"inputs: {use} needs an expression table (`omics`), and none is configured")
        if use in ("slides", "both") and inputs.features is None:
            raise HistoError(f"inputs: {use} needs slide features (`features`), and none are configured")
        omics = inputs.omics if use in ("omics", "both") else None
        pooled = None
        if use in ("slides", "both"):
            pooled = pooled_slide_features(inputs.features, inputs.slides, inputs.labels.index.tolist())

        folds = make_splits(inputs.labels, split_config, inputs.label_column, seed=ctx.seed)
        if ctx.is_main:
            write_json_atomic(ctx.out_dir / "stage_config.json", config.model_dump(mode="json"))
            write_json_atomic(ctx.out_dir / "cohort_report.json", inputs.report)
            ctx.add_artifact(
                ctx.out_dir / "cohort_report.json", "cohort report: patients, modalities, exclusions"
            )
            export_splits(folds, ctx.out_dir / "splits")
            write_json_atomic(ctx.out_dir / "splits" / "summary.json", splits_summary(folds))

        preprocess = config.omics.preprocess if config.omics is not None else None
        inner_seed = config.inner_cv.seed if config.inner_cv.seed is not None else ctx.seed
        per_fold, frames = [], []
        for fold in ctx.progress(folds, description=f"{ctx.stage_id}: folds"):
            fold_dir = ctx.out_dir / "folds" / str(fold.index)
            done = fold_dir / "metrics.json"
            if done.exists():  # a resumed run
                per_fold.append(json.loads(done.read_text()))
                frames.append(pd.read_csv(fold_dir / "test_predictions.csv"))
                continue
            from histo.plugins.classical.fold import fit_fold

            fit_ids = fold.train + (fold.val if config.fit_on == "train_val" else [])
            with _threads(config.blas_threads):
                result = fit_fold(
                    config.model.build(), task, kind, inputs.labels, fit_ids, fold.test, fold.index,
                    omics=omics, preprocess=preprocess, pooled=pooled, inner_folds=config.inner_cv.folds,
                    inner_seed=inner_seed + fold.index, seed=ctx.seed * 100 + fold.index,
                )  # fmt: skip
            record = {
                "fold": fold.index, "n_train": len(fit_ids),
                "n_val": len(fold.val) if config.fit_on == "train" else 0,
                "n_test": len(fold.test), "best_epoch": None, "selected_on": result.selection["selected_on"],
                "chosen": result.selection["chosen"], "test": result.metrics, "notes": result.notes,
                "train_median_risk": result.train_median_risk,
            }  # fmt: skip
            if ctx.is_main:
                fold_dir.mkdir(parents=True, exist_ok=True)
                write_json_atomic(fold_dir / "model.json", {
                    "model": config.model.model_dump(mode="json"), "inputs": use, "fit_on": config.fit_on,
                    "features": len(result.columns), "dropped_constant": result.dropped, **result.selection,
                })  # fmt: skip
                write_csv(result.predictions, fold_dir / "test_predictions.csv")
                write_json_atomic(done, record)
            ctx.log.info("%s fold %d: %s (chose %s)", ctx.stage_id, fold.index,
                         _brief(result.metrics), result.selection["chosen"])  # fmt: skip
            per_fold.append(record)
            frames.append(result.predictions)

        predictions = pd.concat(frames, ignore_index=True)
        if not ctx.is_main:
            return
        write_csv(predictions, ctx.out_dir / "predictions.csv")
        pooled_ci = pooled_summary(predictions, n_resamples=config.bootstrap, seed=ctx.seed)
        metrics = write_metrics(
            ctx.out_dir / "metrics.json", per_fold,
            {"task": config.task.name, "model": config.model.name, "inputs": use, "pooled": pooled_ci},
        )  # fmt: skip
        ctx.add_artifact(ctx.out_dir / "predictions.csv", "out-of-fold predictions")
        ctx.add_artifact(ctx.out_dir / "metrics.json", "test metrics per fold, mean and std, pooled with CI")
        for name, description in plots(task, predictions, ctx.out_dir, config.cohort.time_unit).items():
            ctx.add_artifact(ctx.out_dir / name, description)
        ctx.add_metrics(**{k: round(v["mean"], 4) for k, v in metrics["summary"].items()},
                        folds=len(folds), patients=len(inputs.labels))  # fmt: skip

    def _resolved(self, ctx: StageContext) -> tuple[ClassicalConfig, SplitConfig]:
        """The config with `like` and `data_from` applied, and the outer split config."""
        from histo.plugins.stages.train import _rebase

        config = self.config
        if config.like is None:
            if config.cohort is None or config.task is None:
                raise HistoError("the classical stage needs `like: <train stage>`, or `cohort` and `task`")
            if config.data_from is not None:
                config = _rebase(config, ctx.stage_dir(config.data_from))
            return config, config.splits
        given = [
            k for k in ("cohort", "omics", "features", "task", "data_from") if getattr(config, k) is not None
        ]
        if given or "splits" in config.model_fields_set:
            raise HistoError(
                f"with `like: {config.like}` the cohort, omics, features, task and splits are that stage's; "
                f"remove {', '.join(given or ['splits'])}"
            )
        like_dir = ctx.stage_dir(config.like)
        base = _train_config(like_dir)
        features = base.features
        if features is not None and features.stage is not None:  # a sibling stage's folder in this run
            features = features.model_copy(update={"stage": None, "folder": like_dir.parent / features.stage})
        update = {"cohort": base.cohort, "omics": base.omics, "features": features, "task": base.task}
        resolved = config.model_copy(update=update)
        return resolved, SplitConfig(files=like_dir / "splits", seed=None)


def _threads(limit: int | None) -> Any:
    """A context limiting BLAS/OpenMP threads (threadpoolctl), or doing nothing."""
    import contextlib

    from threadpoolctl import threadpool_limits

    return threadpool_limits(limit) if limit is not None else contextlib.nullcontext()


def task_kind(task: Any) -> str:
    """ "survival" or "classification", from what the task's config describes."""
    if hasattr(task.config, "time_column") and hasattr(task.config, "event_column"):
        return "survival"
    if getattr(task.config, "classes", None):
        return "classification"
    raise HistoError(
        f"classical models fit classification or survival tasks; {type(task).__name__} is neither"
    )


def _cox_view(task: Any) -> Any:
    """The survival task with a single risk output (how every classical survival model predicts)."""
    if getattr(task.config, "loss", "cox") == "cox":
        return task
    return type(task)(task.config.model_copy(update={"loss": "cox"}))


def _default_inputs(config: ClassicalConfig) -> str:
    if config.omics is not None and config.features is not None:
        return "both"
    return "omics" if config.omics is not None else "slides"


def _train_config(stage_dir: Path) -> Any:
    from histo.plugins.stages.train import TrainConfig
    from histo.recipe import resolve_config

    path = stage_dir / "stage_config.json"
    if not path.exists():
        raise HistoError(
            f"{stage_dir} is not a finished train stage (no stage_config.json); `like` needs one"
        )
    config = resolve_config(TrainConfig, json.loads(path.read_text()), label=str(path))
    if not (stage_dir / "splits").is_dir():
        raise HistoError(f"{stage_dir} has no splits/ folder; `like` needs a finished train stage")
    return config


def _brief(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float))


SPEC = ComponentSpec(
    "classical",
    ClassicalStage,
    ClassicalConfig,
    "a classical model (Coxnet, logistic regression, RSF, ...) on the deep models' folds and inputs",
)
