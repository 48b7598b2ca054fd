"""Configs of the comparison baselines (torch-free, so listing plugins stays fast).

Defaults follow the original authors' code: TransMIL (szc19990412/TransMIL), Pathomic Fusion
(mahmoodlab/PathomicFusion) and MCAT (mahmoodlab/MCAT).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TransMilConfig(_Config):
    dim: int = Field(512, ge=1, description="token width after the patch projection (the original: 512)")
    heads: int = Field(8, ge=1, description="attention heads; each has dim / heads channels")
    landmarks: int = Field(256, ge=1, description="Nystrom landmarks (segment means); the original: dim / 2")
    pinv_iterations: int = Field(
        6, ge=1, description="iterations of the Moore-Penrose pseudo-inverse approximation (the original: 6)"
    )
    residual_kernel: int = Field(
        33, ge=0, description="length of the depthwise conv over the values added to the attention; 0: none"
    )
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout after each attention's output projection")

    @model_validator(mode="after")
    def _check_shapes(self) -> TransMilConfig:
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")
        if self.residual_kernel and self.residual_kernel % 2 == 0:
            raise ValueError(f"residual_kernel ({self.residual_kernel}) must be odd (or 0 for none)")
        return self


class PathomicConfig(_Config):
    slide_dim: int = Field(32, ge=1, description="width of the histology gated unit (the original path_dim)")
    omics_dim: int = Field(32, ge=1, description="width of the omics gated unit (the original omic_dim)")
    output_dim: int = Field(64, ge=1, description="fused embedding size (the original mmhid)")
    dropout: float = Field(0.25, ge=0, lt=1)
    gate_slide: bool = Field(True, description="gate the histology embedding with the omics one")
    gate_omics: bool = Field(True, description="gate the omics embedding with the histology one")
    bilinear_gate: bool = Field(
        True, description="gate scores from a bilinear form of both embeddings (else a linear layer on both)"
    )
    skip: bool = Field(
        True, description="concatenate the gated embeddings to the fused one before the encoder"
    )


class McatConfig(_Config):
    dim: int = Field(256, ge=1, description="token width of patches, gene groups and transformers")
    heads: int = Field(8, ge=1, description="heads of the two transformers (co-attention has one)")
    layers: int = Field(2, ge=1, description="layers of each transformer")
    feedforward: int = Field(512, ge=1, description="feed-forward width of the transformers")
    dropout: float = Field(0.25, ge=0, lt=1)
    fusion: Literal["concat", "bilinear"] = Field(
        "concat", description="late fusion of the pooled histology and omics vectors"
    )
    bilinear_scale: int = Field(
        8,
        ge=1,
        description="bilinear fusion only: gated units are dim / bilinear_scale wide (the original: 8)",
    )

    @model_validator(mode="after")
    def _check_shapes(self) -> McatConfig:
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")
        if self.fusion == "bilinear" and self.dim < self.bilinear_scale:
            raise ValueError(f"bilinear_scale ({self.bilinear_scale}) must not exceed dim ({self.dim})")
        return self
