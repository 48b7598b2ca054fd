"""The `predict` stage: run the fold models of a finished train stage on new slides.

WSI-only models (a student, abmil, ...) need no transcriptome: this is how a trained model meets a
new slide. Each fold's model predicts; outputs are averaged over folds (survival risks are first
centred on each fold's training median, so "high risk" means above the median of the patients that
fold was trained on). Writes:
    slide_predictions.csv    one row per slide (and fold mean)
    patient_predictions.csv  one row per patient (slides of a patient pooled into one bag)
    attention/<slide>.npz    per magnification: coords and each fold's mean patch attention
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from histo import ComponentSpec
from histo.errors import HistoError
from histo.interfaces import Stage, StageContext
from histo.plugins.training.inputs import FeaturesConfig
from histo.recipe import InputPath, StageRef


class PredictConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: InputPath | None = Field(
        None, description="folder of a finished train stage (runs/<run>/stages/<id>)"
    )
    model_stage: StageRef | None = Field(None, description="or: a train stage of this recipe")
    features: FeaturesConfig = Field(description="features of the new slides, made like the training ones")
    patients: InputPath | None = Field(
        None, description="optional CSV with slide_id, patient_id columns; default: each slide is a patient"
    )
    folds: list[int] | None = Field(None, description="which fold models to use; default all")

    @model_validator(mode="after")
    def _one_model(self) -> PredictConfig:
        if (self.model is None) == (self.model_stage is None):
            raise ValueError(
                "give exactly one of `model` (a train stage folder) or `model_stage` (a stage id)"
            )
        return self


class PredictStage(Stage[PredictConfig]):
    version = "1"

    def run(self, ctx: StageContext) -> None:
        from histo.plugins.training.inference import predict_bags

        model_dir = (
            ctx.stage_dir(self.config.model_stage)
            if self.config.model_stage
            else Path(str(self.config.model))
        )
        if not (model_dir / "stage_config.json").exists():
            raise HistoError(f"{model_dir} is not a finished train stage folder (no stage_config.json)")
        slides, patients = predict_bags(model_dir, self.config, ctx)
        ctx.add_artifact(ctx.out_dir / "slide_predictions.csv", "predictions per slide (mean over folds)")
        ctx.add_artifact(ctx.out_dir / "patient_predictions.csv", "predictions per patient")
        ctx.add_metrics(slides=len(slides), patients=len(patients))
        summary = {"model": str(model_dir), "slides": len(slides), "patients": len(patients)}
        (ctx.out_dir / "predict.json").write_text(json.dumps(summary, indent=2))


SPEC = ComponentSpec(
    "predict",
    PredictStage,
    PredictConfig,
    "run a trained train stage's fold models on new slides (no transcriptome needed for WSI models)",
)
