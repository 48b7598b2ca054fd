"""Omics encoders. Input: {group: [B, genes]}; groups are concatenated in the order of ModelDims."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from histo.blocks import require_omics
from histo.interfaces import ModelDims

from .configs import MlpConfig, PathwayTokensConfig, SnnConfig


def snn_block(in_dim: int, out_dim: int, dropout: float) -> nn.Sequential:
    """Linear -> SELU-friendly ELU -> AlphaDropout, initialised N(0, 1/sqrt(fan_in)) as SNNs require."""
    linear = nn.Linear(in_dim, out_dim)
    nn.init.normal_(linear.weight, std=1 / math.sqrt(in_dim))
    nn.init.zeros_(linear.bias)
    return nn.Sequential(linear, nn.ELU(), nn.AlphaDropout(dropout))


class SNN(nn.Module):
    """Self-normalising network: one vector per input."""

    def __init__(
        self, in_dim: int, hidden: list[int], output_dim: int, dropout: float, elu_tail: bool = False
    ) -> None:
        """elu_tail: end in Linear-ELU-AlphaDropout-ReLU (the released MaxNet) instead of Linear-ReLU;
        the two agree in eval mode."""
        super().__init__()
        widths = [in_dim, *hidden]
        self.blocks = nn.Sequential(*(snn_block(a, b, dropout) for a, b in itertools.pairwise(widths)))
        self.out = nn.Linear(widths[-1], output_dim)
        nn.init.normal_(self.out.weight, std=1 / math.sqrt(widths[-1]))
        nn.init.zeros_(self.out.bias)
        self.tail: nn.Module = (
            nn.Sequential(nn.ELU(), nn.AlphaDropout(dropout)) if elu_tail else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.tail(self.out(self.blocks(x))))


class ConcatGroups(nn.Module):
    """Concatenate the groups' expression vectors, then one encoder: [B, output_dim]."""

    def __init__(self, groups: list[str], encoder: nn.Module, output_dim: int) -> None:
        super().__init__()
        self.groups = groups
        self.encoder = encoder
        self.output_dim = output_dim
        self.tokens = False

    def forward(self, omics: Mapping[str, Tensor]) -> Tensor:
        return self.encoder(torch.cat([omics[g] for g in self.groups], dim=1))


class PerGroup(nn.Module):
    """One encoder per group: tokens [B, groups, output_dim]."""

    def __init__(self, encoders: dict[str, nn.Module], output_dim: int) -> None:
        super().__init__()
        self.groups = list(encoders)
        self.encoders = nn.ModuleDict(encoders)
        self.output_dim = output_dim
        self.tokens = True

    def forward(self, omics: Mapping[str, Tensor]) -> Tensor:
        return torch.stack([self.encoders[g](omics[g]) for g in self.groups], dim=1)


class SnnBuilder:
    def __init__(self, config: SnnConfig) -> None:
        self.config = config

    def build(self, dims: ModelDims) -> nn.Module:
        require_omics(dims, "omics encoder 'snn'")
        c = self.config
        if c.per_group:
            encoders = {g: SNN(n, c.hidden, c.output_dim, c.dropout) for g, n in dims.omics_groups.items()}
            return PerGroup(encoders, c.output_dim)
        total = sum(dims.omics_groups.values())
        return ConcatGroups(
            list(dims.omics_groups), SNN(total, c.hidden, c.output_dim, c.dropout), c.output_dim
        )


class MlpBuilder:
    def __init__(self, config: MlpConfig) -> None:
        self.config = config

    def build(self, dims: ModelDims) -> nn.Module:
        require_omics(dims, "omics encoder 'mlp'")
        c = self.config
        widths = [sum(dims.omics_groups.values()), *c.hidden]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(c.dropout)]
        layers += [nn.Linear(widths[-1], c.output_dim), nn.ReLU()]
        return ConcatGroups(list(dims.omics_groups), nn.Sequential(*layers), c.output_dim)


class PathwayTokensBuilder:
    def __init__(self, config: PathwayTokensConfig) -> None:
        self.config = config

    def build(self, dims: ModelDims) -> nn.Module:
        require_omics(dims, "omics encoder 'pathway_tokens'")
        c = self.config

        def group_net(n: int) -> nn.Module:
            return nn.Sequential(
                snn_block(n, c.hidden, c.dropout), nn.Linear(c.hidden, c.output_dim), nn.ELU()
            )

        return PerGroup({g: group_net(n) for g, n in dims.omics_groups.items()}, c.output_dim)
