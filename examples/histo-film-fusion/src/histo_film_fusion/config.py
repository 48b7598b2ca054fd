"""The fusion's parameters. pydantic only: histo imports this module to list and validate plugins."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FilmConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hidden: int = Field(64, ge=1, description="patch features are projected to this size, then modulated")
    attention_dim: int = Field(32, ge=1, description="hidden size of the gated attention pooling")
    output_dim: int = Field(64, ge=1, description="size of the fused embedding the task's head reads")
    dropout: float = Field(0.25, ge=0.0, lt=1.0, description="dropout after the projections")
