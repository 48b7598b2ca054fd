"""Any timm model as a patch encoder, including hub-hosted pathology models (UNI, ...), offline.

timm is an optional extra (`pip install "histo-mml[timm]"`): it is imported only when such a model is
built. Weights never download during a run: they come from `checkpoint` or from the local Hugging Face
cache, which a user with access fills once with `huggingface-cli download <repo>`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

from histo.errors import HistoError
from histo.interfaces import FeatureExtractor

from .configs import TimmConfig
from .hashing import file_sha256
from .modules import output_dim_of

EXTRA_HINT = 'install the optional extra with: pip install "histo-mml[timm]" (it brings timm and torchvision)'


def import_timm() -> Any:
    try:
        import timm
    except ImportError as exc:
        raise HistoError(
            f"the `timm` feature extractor needs the timm package, which is not installed; {EXTRA_HINT}"
        ) from exc
    except Exception as exc:  # e.g. a torchvision built for another torch
        raise HistoError(
            f"the `timm` feature extractor could not import timm ({type(exc).__name__}: {exc}); "
            "torchvision must match the installed torch version; reinstall with: "
            'pip install "histo-mml[timm]" torch==<your torch version>'
        ) from exc
    return timm


@contextmanager
def hub_offline() -> Iterator[None]:
    """Forbid downloads while building, so a run on a cluster node never waits on the network."""
    saved = {key: os.environ.get(key) for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def missing_weights_hint(model: str) -> str:
    repo = model.removeprefix("hf-hub:") if model.startswith("hf-hub:") else f"timm/{model}"
    cache = os.environ.get("HF_HOME", "~/.cache/huggingface")
    return (
        f"its weights are not in the local Hugging Face cache ({cache}); "
        f"on a machine with internet (and, for gated models such as UNI, after accepting the licence and "
        f"`huggingface-cli login`) run `huggingface-cli download {repo}`, or set `checkpoint:` to a local "
        "weights file together with the architecture's timm name"
    )


def _triple(values: Any) -> tuple[float, float, float]:
    r, g, b = (float(v) for v in values)
    return (r, g, b)


class TimmExtractor(FeatureExtractor):
    """`input_size`, `mean`, `std` and `output_dim` are known once `build()` has run."""

    def __init__(self, config: TimmConfig) -> None:
        self.config = config
        if config.checkpoint is not None and not config.checkpoint.is_file():
            raise HistoError(
                f"timm checkpoint {config.checkpoint} does not exist; fix `checkpoint:` in the recipe"
            )
        self.input_size = config.input_size or 224
        self.mean: tuple[float, float, float] = config.mean or FeatureExtractor.mean
        self.std: tuple[float, float, float] = config.std or FeatureExtractor.std
        self._resolved = False

    def build(self) -> nn.Module:
        timm = import_timm()
        cfg = self.config
        kwargs: dict[str, Any] = {"num_classes": 0, **cfg.model_kwargs}
        if cfg.checkpoint is not None:
            kwargs["pretrained_cfg_overlay"] = {"file": str(cfg.checkpoint)}
        try:
            with hub_offline():
                model = timm.create_model(cfg.model, pretrained=cfg.pretrained, **kwargs)
        except Exception as exc:
            hint = (
                ""
                if cfg.checkpoint is not None or not cfg.pretrained
                else f"; {missing_weights_hint(cfg.model)}"
            )
            raise HistoError(
                f"could not build timm model {cfg.model!r}: {type(exc).__name__}: {exc}{hint}"
            ) from exc
        model.eval()
        data = timm.data.resolve_model_data_config(model)
        self.input_size = int(cfg.input_size or data["input_size"][-1])
        self.mean = _triple(cfg.mean or data["mean"])
        self.std = _triple(cfg.std or data["std"])
        self.output_dim = output_dim_of(model, self.input_size, f"timm model {cfg.model!r}")
        self._resolved = True
        return model

    def describe(self) -> dict[str, Any]:
        if not self._resolved:
            raise RuntimeError("TimmExtractor.describe() needs build() first")
        weights = file_sha256(self.config.checkpoint) if self.config.checkpoint else None
        return {
            **super().describe(),
            "model": self.config.model,
            "pretrained": self.config.pretrained,
            "model_kwargs": self.config.model_kwargs,
            "checkpoint_sha256": weights,
        }
