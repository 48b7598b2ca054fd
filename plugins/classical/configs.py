"""Parameters of the classical models, hyperparameter grids included (searched by inner CV on the
training part of each fold; the order of a grid breaks ties: the strongest regularisation first)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class LogisticL2Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    c_grid: list[float] = Field(
        default=[1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0],
        min_length=1,
        description="inverse penalty strengths C searched by inner CV (ascending: ties go to the strongest "
        "penalty)",
    )
    class_weight: Literal["balanced", "none"] = Field(
        "balanced", description="weight classes by n / (k * count), as the deep classification task does"
    )
    max_iter: int = Field(5000, ge=10, description="solver iterations (lbfgs)")


class LogisticElasticNetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    c_grid: list[float] = Field(
        default=[1e-2, 1e-1, 1.0, 10.0], min_length=1, description="inverse penalty strengths C searched"
    )
    l1_ratios: list[float] = Field(
        default=[0.2, 0.5, 0.8],
        min_length=1,
        description="elastic-net mixing values searched (0 = ridge, 1 = lasso)",
    )
    class_weight: Literal["balanced", "none"] = Field("balanced", description="class weighting")
    max_iter: int = Field(5000, ge=10, description="solver iterations (saga)")


class CoxnetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    l1_ratios: list[float] = Field(
        default=[0.5],
        min_length=1,
        description="elastic-net mixing values searched (each with its own alpha path; 1 = lasso)",
    )
    n_alphas: int = Field(100, ge=2, description="length of the alpha path fitted on the training part")
    alpha_min_ratio: float = Field(0.01, gt=0, lt=1, description="smallest alpha / largest alpha")
    max_iter: int = Field(100_000, ge=100, description="coordinate-descent iterations")


class CoxPHConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alphas: list[float] = Field(
        default=[1000.0, 100.0, 10.0, 1.0, 0.1],
        min_length=1,
        description="ridge penalties searched (descending: ties go to the strongest)",
    )
    components: int | None = Field(
        16,
        ge=1,
        description="principal components of the inputs (fitted on the rows each fit sees) that the Cox "
        "model is fitted on; null = every input column. Cox PH's Newton steps cost O(features^2) per "
        "patient and are unidentifiable with more features than events, so on expression or slide "
        "features keep this small",
    )
    ties: Literal["breslow", "efron"] = Field("efron", description="handling of tied event times")
    n_iter: int = Field(100, ge=1, description="Newton-Raphson iterations")


class RandomSurvivalForestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_estimators: int = Field(100, ge=1, description="trees")
    min_samples_leaf: list[int] = Field(
        default=[20, 5], min_length=1, description="leaf sizes searched (largest first: ties go to it)"
    )
    max_features: Literal["sqrt", "log2"] | float = Field(
        "sqrt", description="features tried per split: sqrt, log2 or a fraction"
    )
    n_jobs: int = Field(1, ge=1, description="processes for fitting trees")
