"""Pathology foundation models by name (UNI, CONCH, Virchow2, ...), from a local weights file.

One extractor class serves every entry of `catalogue.SPECS`: the entry fixes architecture,
preprocessing and output; the config only says where the weights are and, optionally, their sha256.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from histo.errors import HistoError
from histo.interfaces import FeatureExtractor

from .catalogue import EncoderSpec
from .configs import FoundationEncoderConfig
from .hashing import file_sha256
from .weights import WeightsSource, check_sha256, hf_blob_sha256, torch_hub_checkpoints


def weights_source(spec: EncoderSpec) -> WeightsSource:
    hub = torch_hub_checkpoints()
    return WeightsSource(
        spec.hf_repo, spec.filenames, spec.how_to_get, tuple(hub / name for name in spec.torch_hub_files)
    )


def resolve_weights(spec: EncoderSpec, config: FoundationEncoderConfig) -> Path:
    """The configured file, or the one found in the local caches; an error naming where it looked."""
    if config.weights is not None:
        path = Path(config.weights).expanduser()
        if not path.is_file():
            raise HistoError(
                f"weights file {path} for `{spec.name}` does not exist; fix `weights:` in the extractor's "
                f"params, or remove it to use the local Hugging Face cache. {spec.how_to_get}"
            )
        return path
    return weights_source(spec).locate(spec.name)


class FoundationEncoder(FeatureExtractor):
    def __init__(self, spec: EncoderSpec, config: FoundationEncoderConfig) -> None:
        self.spec = spec
        self.config = config
        self.input_size = spec.input_size
        self.mean = spec.mean
        self.std = spec.std
        self.output_dim = spec.output_dim
        self.interpolation = spec.interpolation
        self.gpu_precision = spec.precision
        self.weights = resolve_weights(spec, config)
        if config.sha256 is not None:  # fail before any slide is read
            check_sha256(self.weights, config.sha256)
        else:
            recorded = hf_blob_sha256(self.weights)
            if recorded is not None:
                check_sha256(self.weights, recorded, source="the Hugging Face cache's record")
        self.dropped_keys: list[str] = []

    def build(self) -> nn.Module:
        from .encoders import load_encoder

        model, self.dropped_keys = load_encoder(self.spec, self.weights)
        return model

    def describe(self) -> dict[str, Any]:
        spec = self.spec
        return {
            **super().describe(),
            "encoder": spec.name,
            "weights_sha256": file_sha256(self.weights),
            "crop": spec.crop,
            "interpolation": spec.interpolation,
            "expected_mpp": spec.mpp,
        }
