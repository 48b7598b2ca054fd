"""Build the model the recipe describes, with a linear head when its body gives an embedding."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from histo.blocks import omics_vector
from histo.errors import HistoError
from histo.interfaces import ModelDims

from .config import ModelConfig


class OmicsOnly(nn.Module):
    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.output_dim = encoder.output_dim

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {"embedding": omics_vector(self.encoder, batch["omics"])}


class Predictor(nn.Module):
    """body(batch) -> {"logits"} directly, or {"embedding"} to which `head` is applied."""

    def __init__(self, body: nn.Module, num_outputs: int) -> None:
        super().__init__()
        self.body = body
        self.head = (
            None if getattr(body, "produces_logits", False) else nn.Linear(body.output_dim, num_outputs)
        )

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        out = dict(self.body(batch))
        if self.head is not None:
            out["logits"] = self.head(out["embedding"])
        return out


class Ensemble(nn.Module):
    """Several trained models of the same architecture (seeds, inner-fold models) used as one: every
    floating-point output (logits, embeddings, attention, nested dicts of them) is the members' mean;
    anything else comes from the first member. Averaging logits keeps the task's `predict`/`evaluate`
    unchanged (for a Cox head it averages log-hazards)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.output_dim = getattr(members[0], "output_dim", None)

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        return dict(_average([member(batch) for member in self.members]))


def _average(values: list[Any]) -> Any:
    first = values[0]
    if isinstance(first, torch.Tensor):
        same = all(isinstance(v, torch.Tensor) and v.shape == first.shape for v in values)
        return torch.stack(values).mean(dim=0) if same and first.is_floating_point() else first
    if isinstance(first, dict) and all(isinstance(v, dict) for v in values):
        shared = [k for k in first if all(k in v for v in values)]
        return {k: _average([v[k] for v in values]) if k in shared else first[k] for k in first}
    return first


def build_model(config: ModelConfig, dims: ModelDims, members: int = 1) -> nn.Module:
    """The recipe's model; with `members` > 1 an `Ensemble` of that many (weights loaded afterwards)."""
    if members > 1:
        return Ensemble([build_model(config, dims) for _ in range(members)])
    slide = config.slide_encoder.build() if config.slide_encoder else None
    omics = config.omics_encoder.build() if config.omics_encoder else None
    if config.fusion is not None:
        body = config.fusion.build().build(dims, slide, omics)
    elif slide is not None and omics is not None:
        raise HistoError("model has a slide_encoder and an omics_encoder but no fusion: add `fusion: concat`")
    elif slide is not None:
        body = slide.build(dims)
    elif omics is not None:
        body = OmicsOnly(omics.build(dims))
    else:
        raise HistoError("model needs at least one of slide_encoder, omics_encoder or fusion")
    return Predictor(body, dims.num_outputs)
