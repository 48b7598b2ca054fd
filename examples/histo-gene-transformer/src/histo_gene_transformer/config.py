"""The encoder's parameters. pydantic only: histo imports this module to list and validate plugins."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class GeneTransformerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dim: int = Field(64, ge=4, description="token size: each gene group is embedded into this many features")
    heads: int = Field(4, ge=1, description="attention heads; must divide `dim`")
    layers: int = Field(2, ge=1, le=12, description="transformer encoder layers over the group tokens")
    feedforward: int = Field(128, ge=4, description="hidden size of each layer's feed-forward block")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout in the group embeddings and layers")
    tokens: bool = Field(
        False,
        description="true: give fusions one token per gene group [B, groups, dim]; "
        "false: one vector per patient [B, dim] (the mean of the tokens)",
    )

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> GeneTransformerConfig:
        if self.dim % self.heads:
            raise ValueError(f"`heads` ({self.heads}) must divide `dim` ({self.dim})")
        return self
