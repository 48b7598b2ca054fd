"""Configs of the prediction tasks. Pydantic only, so listing plugins does not import torch."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


def label_text(value: Any) -> str:
    """A label as text, so that `2`, `2.0` (pandas turns int columns with gaps into floats) and "2" match."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        return label_text(value.item())
    return str(value).strip()


class ClassificationConfig(BaseModel):
    """A categorical label (subtype, grade) predicted with a softmax head of one logit per class."""

    model_config = ConfigDict(extra="forbid")

    column: str = Field(description="Column of the cohort's label table holding each patient's class.")
    classes: list[str] = Field(
        min_length=2,
        description="The classes in the order of the head's outputs: distinct non-empty strings (quote "
        "numbers: ['1', '2']). The label column's values are compared as text, so 2, 2.0 and '2' in the "
        "table are class '2'. Every class must occur in the data and every value must be a class "
        "(a patient with a missing value is skipped).",
    )
    class_weights: Literal["balanced", "none"] = Field(
        "balanced",
        description="'balanced' weights the cross-entropy by n / (k * count_c), counted on the training "
        "part of each fold only; 'none' gives every class weight 1.",
    )
    ordinal: bool = Field(
        False,
        description="The classes are ordered (e.g. grade); also report quadratic-weighted kappa and the "
        "mean absolute error between predicted and true class index.",
    )

    @field_validator("classes", mode="before")
    @classmethod
    def _classes_are_strings(cls, value: Any) -> Any:
        """YAML turns `nan`, `yes`, `0` and `[a]` into floats, booleans, ints and lists: all would become
        class names no table value matches, silently dropping patients."""
        if isinstance(value, list | tuple):
            bad = [v for v in value if not isinstance(v, str)]
            if bad:
                quoted = ", ".join(repr(str(v)) for v in bad)
                raise ValueError(
                    f"classes are strings; YAML read {', '.join(repr(v) for v in bad)} as "
                    f"{', '.join(sorted({type(v).__name__ for v in bad}))}: quote them ({quoted})"
                )
            return [v.strip() for v in value]
        return value

    @field_validator("classes")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        duplicates = sorted({v for v in value if value.count(v) > 1})
        if duplicates:
            raise ValueError(f"classes must be unique; repeated: {', '.join(duplicates)}")
        if any(v == "" for v in value):
            raise ValueError("a class name cannot be empty")
        return value


class SurvivalConfig(BaseModel):
    """Time-to-event prediction from right-censored `time`/`event` columns."""

    model_config = ConfigDict(extra="forbid")

    loss: Literal["nll", "cox"] = Field(
        "nll",
        description="'nll': discrete-time hazards over `bins` intervals with the censored negative "
        "log-likelihood; 'cox': one log-hazard output and the negative Cox partial log-likelihood "
        "(Breslow ties) over the risk sets of each batch.",
    )
    bins: int = Field(
        4,
        ge=2,
        le=100,
        description="Number of time intervals of the 'nll' head; edges are quantiles of the observed "
        "(uncensored) training times, with outer edges 0 and +inf. Ignored by 'cox'.",
    )
    alpha: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="'nll' only: loss = (1 - alpha) * full NLL + alpha * uncensored term (MCAT/SurvPath "
        "weighting; 0 is the plain likelihood).",
    )
    eval_times: list[float] = Field(
        default_factory=lambda: [0.25, 0.5, 0.75],
        min_length=1,
        description="Quantiles (strictly between 0 and 1) of the evaluated set's observed event times at "
        "which time-dependent AUC is reported; times outside the follow-up range are skipped.",
    )
    ibs_range: tuple[float, float] = Field(
        (0.1, 0.9),
        description="Quantiles of the evaluated set's follow-up times between which the integrated "
        "Brier score is integrated (on a grid of up to 50 times).",
    )
    time_column: str = Field("time", description="Column with the follow-up time (> 0).")
    event_column: str = Field("event", description="Column with 1 = event observed, 0 = censored.")

    @field_validator("eval_times")
    @classmethod
    def _quantiles(cls, value: list[float]) -> list[float]:
        bad = [q for q in value if not 0.0 < q < 1.0]
        if bad:
            raise ValueError(f"eval_times are quantiles and must lie strictly between 0 and 1; got {bad}")
        return sorted(set(value))

    @model_validator(mode="after")
    def _range(self) -> SurvivalConfig:
        low, high = self.ibs_range
        if not 0.0 <= low < high <= 1.0:
            raise ValueError(f"ibs_range must be two quantiles 0 <= low < high <= 1; got {self.ibs_range}")
        return self
