"""Where a training stage's inputs come from: the cohort, the expression table and the feature bags,
and which patients can be used (each exclusion recorded with its reason)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from histo.errors import HistoError
from histo.interfaces import StageContext
from histo.plugins.cohort import CohortConfig, OmicsConfig
from histo.recipe import InputPath, StageRef

from .bags import SlideFeatures
from .shard_source import ShardFeatures


class FeaturesConfig(BaseModel):
    """Patch features: an earlier extract stage, or a folder of bags (histo, CLAM h5_files/pt_files,
    TRIDENT features_<encoder>)."""

    model_config = ConfigDict(extra="forbid")

    stage: StageRef | None = Field(None, description="id of an earlier extract stage")
    folder: InputPath | None = Field(None, description="a folder of existing feature bags")
    magnifications: list[str] | None = Field(
        None, description="magnifications to use (folders under features/); default all that exist"
    )
    encoder: str | None = Field(None, description="TRIDENT folders: which features_<encoder> to read")
    cache: bool = Field(True, description="keep bags in memory after the first read")
    source: Literal["bags", "shards"] = Field(
        "bags",
        description="`bags`: read the per-slide bag files (random access, cached); `shards`: stream the "
        "webdataset shards an extract stage wrote with `shards: true` (`shards/<mag>/index.json`), for "
        "cohorts larger than memory",
    )
    shuffle_buffer: int = Field(
        64, ge=1, description="with `source: shards`: patients held in memory to shuffle training order"
    )

    @model_validator(mode="after")
    def _one_source(self) -> FeaturesConfig:
        if (self.stage is None) == (self.folder is None):
            raise ValueError("give exactly one of `stage` (an extract stage id) or `folder`")
        return self


def feature_files(config: FeaturesConfig, ctx: StageContext) -> dict[str, dict[str, Path]]:
    """Magnification -> slide id -> bag file."""
    from histo.plugins.features import find_bags

    root = ctx.stage_dir(config.stage) if config.stage else Path(config.folder or ".")
    per_mag = root / "features"
    if per_mag.is_dir():
        available = sorted(p.name for p in per_mag.iterdir() if p.is_dir() and not p.name.startswith("."))
        wanted = config.magnifications or available
        missing = [m for m in wanted if m not in available]
        if missing:
            raise HistoError(f"{per_mag}: no features for magnification(s) {missing}; found {available}")
        return {mag: find_bags(per_mag / mag) for mag in wanted}
    if config.magnifications and len(config.magnifications) > 1:
        raise HistoError(
            f"{root} holds one set of bags; it cannot provide magnifications {config.magnifications}"
        )
    name = config.magnifications[0] if config.magnifications else "bag"
    return {name: find_bags(root, encoder=config.encoder)}


def shard_folders(config: FeaturesConfig, ctx: StageContext) -> dict[str, Path]:
    """Magnification -> `shards/<mag>` folder of an extract stage (or a folder laid out like one)."""
    root = ctx.stage_dir(config.stage) if config.stage else Path(config.folder or ".")
    shards = root / "shards"
    if not shards.is_dir():
        raise HistoError(
            f"{shards} does not exist: `source: shards` reads the webdataset shards of an extract stage "
            "run with `shards: true`; set that and rerun extract, or use `source: bags`"
        )
    available = sorted(p.name for p in shards.iterdir() if p.is_dir() and not p.name.startswith("."))
    wanted = config.magnifications or available
    missing = [m for m in wanted if m not in available]
    if missing or not wanted:
        raise HistoError(f"{shards}: no shards for magnification(s) {missing or wanted}; found {available}")
    return {mag: shards / mag for mag in wanted}


@dataclass
class TrainingInputs:
    labels: pd.DataFrame  # usable patients only, indexed by patient id
    slides: dict[str, list[str]]  # patient -> slides that have features
    features: SlideFeatures | ShardFeatures | None
    omics: Any  # histo.plugins.cohort.OmicsTable or None
    report: dict[str, Any]
    label_column: str | None
    shuffle_buffer: int = 64


def load_inputs(
    cohort_config: CohortConfig,
    omics_config: OmicsConfig | None,
    features_config: FeaturesConfig | None,
    task: Any,
    ctx: StageContext,
) -> TrainingInputs:
    from histo.plugins.cohort import cohort_report, load_cohort, load_omics

    cohort = load_cohort(cohort_config)
    for exclusion in cohort.exclusions:
        ctx.record_failure(exclusion.patient or str(exclusion.rows), exclusion.reason, kind="cohort")
    labels = cohort.patients
    keep = pd.Series(True, index=labels.index)

    check_labels = getattr(task, "check_labels", None)
    problems = check_labels(labels, str(cohort_config.table)) if check_labels else []
    if problems:
        raise HistoError("; ".join(problems))
    reasons = task.usable(labels)
    for patient, reason in reasons[reasons != ""].items():
        ctx.record_failure(str(patient), reason, kind="label")
    keep &= reasons == ""

    omics = None
    if omics_config is not None:
        omics = load_omics(omics_config)
        for exclusion in omics.exclusions:
            ctx.record_failure(exclusion.patient or str(exclusion.rows), exclusion.reason, kind="omics")
        has_omics = labels.index.isin(omics.data.index)
        excluded = {str(e.patient) for e in omics.exclusions if e.patient}  # recorded above, with why
        for patient in labels.index[~has_omics & keep.to_numpy()]:
            if str(patient) not in excluded:
                ctx.record_failure(str(patient), f"no expression row in {omics.file}", kind="omics")
        keep &= has_omics

    features: SlideFeatures | ShardFeatures | None = None
    slides: dict[str, list[str]] = {}
    if features_config is not None:
        if features_config.source == "shards":
            features = ShardFeatures(shard_folders(features_config, ctx))
        else:
            features = SlideFeatures(feature_files(features_config, ctx), cache=features_config.cache)
        for patient in labels.index:
            listed = cohort.slides.get(patient, [])
            found = [s for s in listed if features.has_slide(s)]
            if keep[patient]:
                for slide in sorted(set(listed) - set(found)):
                    ctx.record_failure(
                        slide, "no feature bag for this slide", kind="features", patient=patient
                    )
            slides[patient] = found
            if not found and keep[patient]:
                ctx.record_failure(str(patient), "no slide of this patient has features", kind="features")
                keep[patient] = False

    usable = labels[keep.to_numpy()]
    if usable.empty:
        raise HistoError("no usable patient is left; see failures.jsonl in the stage folder for why")
    available = features.slides() if features is not None else None
    report = cohort_report(cohort, omics, available)
    report["usable_patients"] = len(usable)
    buffer = features_config.shuffle_buffer if features_config is not None else 64
    column = getattr(task.config, "column", None)
    return TrainingInputs(usable, slides, features, omics, report, column, buffer)
