"""EfficientNet-Lite0 as the extractor builds it (paddings folded, batch norm and ReLU6 in place)
gives the same floats as the network as its package defines it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from histo.manager import Plugins
from histo.plugins.extractors.efficientnet import BorderZeroPad2d, InPlaceBatchNorm2d
from histo.plugins.extractors.engine import Engine


def test_lean_network_is_bit_identical_on_real_patches(
    cmu_patches: torch.Tensor, histo_plugins: Plugins, monkeypatch: pytest.MonkeyPatch
) -> None:
    extractor = histo_plugins.registry("feature_extractors").build("efficientnet_lite0", {})
    lean = extractor.build()
    pads = [m for m in lean.modules() if isinstance(m, nn.ZeroPad2d)]
    assert len(pads) == 5 and all(p.padding[0] != p.padding[1] for p in pads), "only one-sided pads left"
    assert all(isinstance(p, BorderZeroPad2d) for p in pads)
    assert all(m.inplace for m in lean.modules() if isinstance(m, nn.ReLU6))
    assert all(isinstance(m, InPlaceBatchNorm2d) for m in lean.modules() if isinstance(m, nn.BatchNorm2d))
    monkeypatch.setenv("HISTO_LEAN_MODULES", "0")  # the switch to time the difference
    as_packaged = extractor.build()
    assert sum(isinstance(m, nn.ZeroPad2d) for m in as_packaged.modules()) > len(pads)
    images = cmu_patches[:10]
    for threads, channels_last in ((1, True), (2, True), (1, False)):
        kwargs = {"batch_size": 10, "num_workers": 0, "threads": threads, "channels_last": channels_last}
        expected = Engine(extractor, as_packaged, **kwargs).embed(images)  # type: ignore[arg-type]
        got = Engine(extractor, lean, **kwargs).embed(images)  # type: ignore[arg-type]
        assert torch.isfinite(got).all() and got.abs().sum() > 0
        assert torch.equal(got, expected)


def test_in_place_batch_norm_is_the_ordinary_one_outside_inference() -> None:
    """Training or recording gradients: the input is left alone and gradients flow."""
    torch.manual_seed(0)
    norm = InPlaceBatchNorm2d(4)
    norm.running_mean.normal_()  # type: ignore[union-attr]
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    before = x.detach().clone()
    y = norm.eval()(x)
    y.sum().backward()
    assert torch.equal(x.detach(), before) and x.grad is not None
    with torch.inference_mode():
        fresh = before.clone()
        expected = nn.functional.batch_norm(
            before, norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps
        )
        assert norm(fresh) is fresh and torch.equal(fresh, expected)


def test_border_zero_pad_is_f_pad() -> None:
    """Same values and layout as `F.pad` for one-sided and two-sided pads, both layouts; with
    gradients it is `F.pad` itself."""
    torch.manual_seed(0)
    for padding in ((0, 1, 0, 1), (1, 2, 1, 2), (2, 0, 0, 3)):
        pad = BorderZeroPad2d(padding)
        for x in (
            torch.randn(2, 5, 7, 6),
            torch.randn(2, 5, 7, 6).contiguous(memory_format=torch.channels_last),
        ):
            with torch.inference_mode():
                got, expected = pad(x), nn.functional.pad(x, padding)
            assert torch.equal(got, expected)
            assert got.is_contiguous(memory_format=torch.channels_last) == (x.stride(1) == 1)
    x = torch.randn(1, 2, 3, 3, requires_grad=True)
    pad(x).sum().backward()
    assert x.grad is not None and torch.equal(x.grad, torch.ones_like(x))
