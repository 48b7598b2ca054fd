"""The extractor's parameters. pydantic only: histo imports this module to list and validate plugins.

`weights` is an `InputPath`: histo puts the file's size and modification time into the cache key of
the extraction stage, so new weights re-extract the features, and the same weights reuse them.
"""

from __future__ import annotations

from pathlib import Path

from histo.recipe import InputPath
from pydantic import BaseModel, ConfigDict, Field, field_validator


class LabCnnConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weights: InputPath = Field(
        description="the trained weights: a file written by torch.save(model.state_dict(), path), or a "
        "checkpoint dict holding them under 'state_dict' or 'model'"
    )
    width: int = Field(32, ge=4, description="channels of the first convolution block (doubling per block)")
    blocks: int = Field(4, ge=1, le=8, description="convolution blocks (conv, batch norm, ReLU, 2x max pool)")
    output_dim: int = Field(128, ge=1, description="size of the feature vector per patch")
    input_size: int = Field(224, ge=32, description="patches are resized to this many pixels square")
    mean: tuple[float, float, float] = Field(
        (0.485, 0.456, 0.406), description="per-channel mean the model was trained with (RGB in [0, 1])"
    )
    std: tuple[float, float, float] = Field(
        (0.229, 0.224, 0.225), description="per-channel standard deviation the model was trained with"
    )

    @field_validator("weights")
    @classmethod
    def _exists(cls, path: Path) -> Path:
        if not path.is_file():
            raise ValueError(f"weights file {path} does not exist (a path relative to where histo runs)")
        return path

    @field_validator("std")
    @classmethod
    def _positive(cls, std: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(std) <= 0:
            raise ValueError("every std must be > 0")
        return std
