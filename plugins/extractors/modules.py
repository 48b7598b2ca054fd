"""What the engine needs of any model: inference mode, a feature size found by a dry run, [N, D] output."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from histo.errors import HistoError


def output_dim_of(model: nn.Module, input_size: int, label: str) -> int:
    """Run `model` on two blank patches; its output must be a float tensor [2, D]."""
    try:
        device = next(model.parameters()).device
    except (StopIteration, AttributeError, RuntimeError):
        device = torch.device("cpu")
    blank = torch.zeros(2, 3, input_size, input_size, device=device)
    try:
        with torch.inference_mode():
            out = model(blank)
    except Exception as exc:
        raise HistoError(
            f"{label} failed on a [2, 3, {input_size}, {input_size}] input: {type(exc).__name__}: {exc}; "
            "check `input_size`"
        ) from exc
    check_output(out, 2, label)
    return int(out.shape[1])


def check_output(out: object, n: int, label: str) -> None:
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != n:
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise HistoError(
            f"{label} returned {shape} for {n} patches; a feature extractor must return one vector per "
            "patch, [N, D] (pool or flatten inside the model)"
        )


def set_eval(model: nn.Module) -> nn.Module:
    """Inference mode where the module allows it (exported programs keep the mode they were exported in)."""
    with contextlib.suppress(NotImplementedError):
        model.eval()
    return model
