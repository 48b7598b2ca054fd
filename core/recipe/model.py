"""The recipe's own shape (phase one). Stage params are checked against each stage's config later."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .bounds import Seed


class StageEntry(BaseModel):
    """One step: which stage plugin runs, with what parameters."""

    model_config = ConfigDict(extra="forbid")

    stage: str = Field(description="name of a registered stage plugin (see `histo plugins`)")
    params: dict[str, Any] = Field(default_factory=dict, description="the stage plugin's own config")


class Recipe(BaseModel):
    """A run: stages executed in the order written, into one run directory."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        default=None, description="run name, a plain file name (the default run folder is runs/<name>); "
        "defaults to the recipe's file name"
    )
    description: str = Field(default="", description="free text, shown in the report")
    seed: Seed = Field(default=42, description="seed for every random choice of the run, 0 .. 2**32-1")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="where models run")
    strict: bool = Field(
        default=False, description="exit non-zero when any slide or row was skipped as a failure"
    )
    stages: dict[str, StageEntry] = Field(description="stage id -> stage; run in this order")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        """A name with a folder in it would put the default run folder outside runs/."""
        if value is None:
            return value
        if value.strip() in ("", ".", "..") or any(c in value for c in "/\\\0"):
            raise ValueError(
                f"name must be a plain file name (no folders, not '.' or '..'), got {value!r}; "
                "choose where the run goes with --out instead"
            )
        return value

    @field_validator("stages")
    @classmethod
    def _some_stages(cls, value: dict[str, StageEntry]) -> dict[str, StageEntry]:
        if not value:
            raise ValueError("a recipe needs at least one stage; see recipes/ for examples")
        return value
