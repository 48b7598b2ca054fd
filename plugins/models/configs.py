"""Configs of the default model components (kept torch-free so listing plugins stays fast)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SnnConfig(_Config):
    hidden: list[int] = Field(default=[64, 48, 32], description="hidden widths (the paper: 64, 48, 32)")
    output_dim: int = Field(128, ge=1, description="embedding size")
    dropout: float = Field(0.25, ge=0, lt=1, description="alpha-dropout rate")
    per_group: bool = Field(
        False, description="one network per gene group, giving one token per group (else one vector)"
    )


class MlpConfig(_Config):
    hidden: list[int] = Field(default=[256, 128], description="hidden widths")
    output_dim: int = Field(128, ge=1)
    dropout: float = Field(0.25, ge=0, lt=1)


class PathwayTokensConfig(_Config):
    hidden: int = Field(256, ge=1, description="width of each group's two-layer network")
    output_dim: int = Field(128, ge=1, description="token size")
    dropout: float = Field(0.25, ge=0, lt=1)


class AbmilConfig(_Config):
    hidden: int = Field(128, ge=1, description="patch projection and embedding size per magnification")
    attention_dim: int = Field(128, ge=1, description="width of the gated attention network")
    dropout: float = Field(0.25, ge=0, lt=1)


class MeanPoolConfig(_Config):
    hidden: int = Field(128, ge=1, description="embedding size per magnification")
    dropout: float = Field(0.25, ge=0, lt=1)


class ConcatConfig(_Config):
    output_dim: int = Field(128, ge=1, description="size of the fused embedding")
    dropout: float = Field(0.25, ge=0, lt=1)
