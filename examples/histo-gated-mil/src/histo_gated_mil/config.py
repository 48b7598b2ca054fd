"""The encoder's parameters. pydantic only: histo imports this module to list and validate plugins."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class GatedMilConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hidden: int = Field(128, ge=1, description="patch features are projected to this size before attention")
    attention_dim: int = Field(64, ge=1, description="hidden size of the gated attention network")
    branches: int = Field(
        2, ge=1, le=16, description="independent attention branches per magnification, each its own pooling"
    )
    dropout: float = Field(0.25, ge=0.0, lt=1.0, description="dropout after the projection")
