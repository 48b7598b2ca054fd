"""The FeatureExtractor histo's extraction engine drives: it says what the model expects (input size,
normalisation, output size) and builds the model with the lab's weights; the engine does reading,
batching, devices and writing the feature files."""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from histo.errors import HistoError
from histo.interfaces import FeatureExtractor

from .config import LabCnnConfig
from .model import LabCNN


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors only (`weights_only=True`: loading runs no code from the file). Accepts a bare
    state_dict or a training checkpoint holding it under 'state_dict' or 'model', and drops the
    'module.' prefix DataParallel/DDP add."""
    try:
        data: Any = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's message is a page long; say what it means here
        raise HistoError(
            f"weights file {path} holds pickled Python objects (a whole model?), not only tensors, and "
            "loading it would run code from the file. Save the weights with "
            "torch.save(model.state_dict(), path)"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as exc:
        raise HistoError(
            f"cannot read weights file {path}: {type(exc).__name__}: {exc}. Save the weights with "
            "torch.save(model.state_dict(), path); a pickled whole model is not accepted"
        ) from None
    if isinstance(data, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(data.get(key), Mapping):
                data = data[key]
                break
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise HistoError(
            f"{path} holds a {type(data).__name__}, not a state_dict of tensors; save the weights with "
            "torch.save(model.state_dict(), path)"
        )
    return {str(k).removeprefix("module."): v for k, v in data.items()}


def load_weights(model: torch.nn.Module, path: Path, config: LabCnnConfig) -> None:
    """Load strictly: a file for another architecture is an error naming what differs, never a
    half-initialised model that gives plausible-looking but meaningless features."""
    state = read_state_dict(path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        details = "; ".join(
            part
            for part in (
                f"missing {', '.join(missing[:5])}" if missing else "",
                f"unexpected {', '.join(unexpected[:5])}" if unexpected else "",
                f"shape (file vs model) {', '.join(wrong[:5])}" if wrong else "",
            )
            if part
        )
        raise HistoError(
            f"weights file {path} does not fit lab_cnn(width={config.width}, blocks={config.blocks}, "
            f"output_dim={config.output_dim}): {details}. Set width/blocks/output_dim to those the "
            "model was trained with"
        )
    model.load_state_dict(state)


class LabCnnExtractor(FeatureExtractor):
    def __init__(self, config: LabCnnConfig) -> None:
        self.config = config
        self.input_size = config.input_size
        self.mean = config.mean
        self.std = config.std
        self.output_dim = config.output_dim

    def build(self) -> torch.nn.Module:
        model = LabCNN(self.config.width, self.config.blocks, self.config.output_dim)
        load_weights(model, self.config.weights, self.config)
        return model.eval()  # batch norm in eval mode: a patch's features never depend on its batch

    def describe(self) -> dict[str, Any]:
        """Written into every feature file: the weights' hash says exactly which model made them."""
        return {
            **super().describe(),
            "extractor": "lab_cnn",
            "width": self.config.width,
            "blocks": self.config.blocks,
            "weights": str(self.config.weights),
            "weights_sha256": _sha256(self.config.weights),
        }
