"""Configs of the prediction tasks. Pydantic only, so listing plugins does not import torch."""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:  # pandas is imported by the callers that have tables; listing plugins needs none
    import pandas as pd


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


def _close(word: str, candidates: list[str], counts: pd.Series | None) -> str:
    """"; did you mean 'x'" (with its patient count) for the closest candidate, or what to do."""
    match = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    if not match:
        if counts is not None:
            return "; add it to the data or remove it from `classes`"
        return "; add it to `classes`, or fix or blank those cells"
    if counts is not None:
        return f"; did you mean {match[0]!r} ({counts[match[0]]} patient(s))?"
    return f"; did you mean {match[0]!r}?"


def check_class_labels(
    config: ClassificationConfig, labels: pd.DataFrame, source: str = "the label table"
) -> list[str]:
    """Problems between the listed classes and the cohort's values: a class no patient has, or a
    value that is no class. Either is a typo far more often than an intended exclusion, and excluding
    silently leaves folds without a class (AUC nan). Here, not in the task, so that the input preflight
    checks classes without importing torch."""
    column = config.column
    if column not in labels.columns:
        have = ", ".join(map(str, labels.columns))
        return [f"column {column!r} (the task's column) is not in {source}; it has: {have}"]
    counts = labels[column].dropna().map(label_text).value_counts()
    found = [str(v) for v in counts.index]
    index = set(config.classes)
    problems = []
    for name in config.classes:
        if name not in counts.index:
            hint = _close(name, [v for v in found if v not in index], counts)
            problems.append(f"class {name!r} occurs in no patient of column {column!r} in {source}{hint}")
    for value in found:
        if value not in index:
            hint = _close(value, [c for c in config.classes if c not in counts.index], None)
            problems.append(
                f"value {value!r} in column {column!r} of {source} ({counts[value]} patient(s)) is not "
                f"one of the classes [{', '.join(config.classes)}]{hint}"
            )
    return problems


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
