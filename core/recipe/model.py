"""The recipe's own shape (phase one). Stage params are checked against each stage's config later."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class StageEntry(BaseModel):
    """One step: which stage plugin runs, with what parameters."""

    model_config = ConfigDict(extra="forbid")

    stage: str = Field(description="name of a registered stage plugin (see `histo plugins`)")
    params: dict[str, Any] = Field(default_factory=dict, description="the stage plugin's own config")


class Recipe(BaseModel):
    """A run: stages executed in the order written, into one run directory."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, description="run name; defaults to the file name")
    description: str = Field(default="", description="free text, shown in the report")
    seed: int = Field(default=42, description="seed for every random choice of the run")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="where models run")
    strict: bool = Field(
        default=False, description="exit non-zero when any slide or row was skipped as a failure"
    )
    stages: dict[str, StageEntry] = Field(description="stage id -> stage; run in this order")
