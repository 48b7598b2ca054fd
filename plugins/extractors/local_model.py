"""A lab's own encoder from a file, without writing a plugin.

Three formats, none of which needs the model's source code except the last:
- `torch.export` programs (`.pt2`, `torch.export.save`; export with a dynamic batch dimension):
  the format torch recommends now, loaded without running code from the file;
- TorchScript (`torch.jit.save(torch.jit.script(model), path)`), deprecated by torch but common;
- a fully pickled module (`torch.save(model, path)`): unpickling executes code from the file, so it
  must be switched on with `allow_pickle: true`, and the model's classes must be importable.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from histo.errors import HistoError
from histo.interfaces import FeatureExtractor

from .configs import LocalModelConfig
from .hashing import file_sha256
from .modules import output_dim_of, set_eval

SCRIPT_HINT = (
    "save it with torch.export.save(torch.export.export(model, (example,), "
    "dynamic_shapes=({0: torch.export.Dim('batch')},)), 'model.pt2') or as TorchScript"
)


def _load_exported(path: Path) -> nn.Module:
    try:
        program = torch.export.load(str(path))
    except Exception as exc:
        raise HistoError(
            f"{path} is not a torch.export program ({type(exc).__name__}: {exc}); {SCRIPT_HINT}"
        ) from exc
    return program.module()


def _load_torchscript(path: Path) -> nn.Module:
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise HistoError(
            f"{path} is not a TorchScript file ({type(exc).__name__}: {exc}); {SCRIPT_HINT}"
        ) from exc


def _load_pickle(path: Path, allow: bool) -> nn.Module:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # a full module: only with the user's explicit consent
        if not allow:
            raise HistoError(
                f"{path} is a pickled module; loading it runs code from the file. If you trust it, set "
                f"`allow_pickle: true` in the extractor's params, or better, {SCRIPT_HINT}"
            ) from None
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError, zipfile.BadZipFile) as exc:
        raise HistoError(f"cannot read model file {path}: {type(exc).__name__}: {exc}") from exc
    if isinstance(obj, nn.Module):
        return obj
    raise HistoError(
        f"{path} holds a {type(obj).__name__} (weights only?), not a model; the `local_model` extractor "
        f"needs the whole model: {SCRIPT_HINT}, or write a feature-extractor plugin (docs/features.md)"
    )


def load_model_file(path: Path, fmt: str, allow_pickle: bool) -> nn.Module:
    if not path.is_file():
        raise HistoError(f"model file {path} does not exist; fix `path:` in the extractor's params")
    if fmt == "export" or (fmt == "auto" and path.suffix == ".pt2"):
        return _load_exported(path)
    if fmt == "torchscript":
        return _load_torchscript(path)
    if fmt == "pickle":
        return _load_pickle(path, allow_pickle)
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception:  # not TorchScript: try a pickled module
        return _load_pickle(path, allow_pickle)


class LocalModel(FeatureExtractor):
    def __init__(self, config: LocalModelConfig) -> None:
        self.config = config
        self.input_size = config.input_size
        self.mean = config.mean
        self.std = config.std
        if config.output_dim is not None:
            self.output_dim = config.output_dim
        if not config.path.is_file():
            raise HistoError(
                f"model file {config.path} does not exist; fix `path:` in the extractor's params"
            )

    def build(self) -> nn.Module:
        cfg = self.config
        model = set_eval(load_model_file(cfg.path, cfg.format, cfg.allow_pickle))
        found = output_dim_of(model, cfg.input_size, f"model {cfg.path}")
        if cfg.output_dim is not None and cfg.output_dim != found:
            raise HistoError(f"model {cfg.path} returns {found} features, but output_dim is {cfg.output_dim}")
        self.output_dim = found
        return model

    def describe(self) -> dict[str, Any]:
        if not hasattr(self, "output_dim"):
            raise RuntimeError("LocalModel.describe() needs build() first (output_dim comes from a dry run)")
        return {**super().describe(), "model_sha256": file_sha256(self.config.path)}
