"""The `dmf` teacher: per magnification, gene-guided deformable cross-attention for each gene group,
fusion of the groups' token streams, and one disentangled subspace feature per group.

Per view: patches -> Linear+ReLU -> tokens; for each group g, out_g = omic_g + DeformAttn(query=omic_g,
keys/values=tokens); fused = Linear(concat_g out_g); feature_g = read-out(fused, omic_g); logits =
heads[view](concat_g feature_g). The omics encoders are shared by the magnifications.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from histo.blocks import masked_mean, require_omics
from histo.errors import HistoError
from histo.interfaces import ModelDims, OmicsEncoder, SlideEncoder
from histo.plugins.models.omics import SNN

from .branch import require_slides, view_layout
from .configs import DmfConfig
from .consistency import check_full_maps, magnification_consistency
from .deformable import DeformableAttention
from .layout import TokenLayout
from .views import combine_views


class SubspaceReadout(nn.Module):
    """Attention from the fused patch tokens (queries) to one group's embedding (key/value), residual,
    mean over the real patches, Linear + Tanh: that group's subspace feature before the last pooler."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.pool = nn.Linear(dim, dim)

    def forward(self, fused: Tensor, group: Tensor, mask: Tensor) -> Tensor:
        key = self.norm(group)
        if key.shape[1] == 1 and not (self.training and self.attention.dropout > 0):
            x = fused + self._single_key(key)  # the queries are not read: no norm over N patches
        else:
            query = self.norm(fused)
            x = fused + self.attention(query, key, key, need_weights=False)[0]
        return torch.tanh(self.pool(masked_mean(self.norm(x), mask)))

    def _single_key(self, key: Tensor) -> Tensor:
        """The attention's output when there is one key and no dropout: every query's weight on it is
        exactly 1, so the output is the key's projected value, the same for every patch ([B, 1, dim]);
        the queries' projection and the attention over N patches are skipped."""
        attention = self.attention
        dim = attention.embed_dim
        bias = attention.in_proj_bias
        value = nn.functional.linear(
            key, attention.in_proj_weight[2 * dim :], None if bias is None else bias[2 * dim :]
        )
        return attention.out_proj(value)


class TeacherBranch(nn.Module):
    """One magnification of the teacher."""

    def __init__(self, feature_dim: int, groups: list[str], config: DmfConfig) -> None:
        super().__init__()
        dim = config.dim
        self.keep_maps = False  # set by the teacher when the full-map consistency loss needs the maps
        self.groups = groups
        self.project = nn.Sequential(nn.Linear(feature_dim, dim), nn.ReLU())
        self.norm = nn.LayerNorm(dim)  # shared pre-norm of patches, gene embeddings and fused tokens
        self.cross = nn.ModuleDict({g: DeformableAttention(dim, config.attention) for g in groups})
        self.fuse = nn.Linear(len(groups) * dim, dim)
        self.readout = nn.ModuleDict(
            {g: SubspaceReadout(dim, config.readout_heads, config.readout_dropout) for g in groups}
        )
        self.out_norm = nn.LayerNorm(dim)
        self.poolers = nn.ModuleDict({g: nn.Linear(dim, dim) for g in groups})

    def forward(
        self, features: Tensor, layout: TokenLayout, omics: Mapping[str, Tensor]
    ) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
        """-> subspace features {g: [B, dim]}, key-attention summaries {g: [B, heads, P*P]}, patch
        attention {g: [B, N]} and, when keep_maps is set, the full maps {g: [B, heads, N, P*P]}."""
        tokens = self.norm(self.project(features))
        streams, summaries, patches, maps = [], {}, {}, {}
        for g in self.groups:
            result = self.cross[g](tokens, layout, query=self.norm(omics[g]), keep_maps=self.keep_maps)
            streams.append(omics[g].unsqueeze(1) + result.out)
            summaries[g] = result.key_attention
            if result.maps is not None:
                maps[g] = result.maps
            patches[g] = result.patch_attention
        fused = self.norm(self.fuse(torch.cat(streams, dim=-1)))
        subspaces = {}
        for g in self.groups:
            pooled = self.readout[g](fused, self.norm(omics[g]).unsqueeze(1), layout.mask)
            subspaces[g] = torch.tanh(self.poolers[g](self.out_norm(pooled)))
        return subspaces, summaries, patches, maps


class DmfTeacher(nn.Module):
    """batch -> {"logits", "view_logits", "subspaces", "view_embeddings", "attention", "aux_loss", ...}."""

    produces_logits = True

    def __init__(self, dims: ModelDims, config: DmfConfig, omics_encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        self.groups: list[str] = list(dims.omics_groups)
        self.views: list[str] = list(dims.magnifications)
        dim = config.dim
        self.omics_encoder = omics_encoder
        if omics_encoder is None:
            self.omics = nn.ModuleDict(
                {
                    g: SNN(
                        n,
                        config.omics_hidden,
                        dim,
                        config.omics_dropout,
                        elu_tail=config.omics_tail == "elu_alphadropout",
                    )
                    for g, n in dims.omics_groups.items()
                }
            )
            self.omics_project: nn.Module = nn.Identity()
        else:
            out = int(getattr(omics_encoder, "output_dim", dim))
            self.omics_project = nn.Identity() if out == dim else nn.Linear(out, dim)
        self.branches = nn.ModuleDict(
            {v: TeacherBranch(dims.feature_dim, self.groups, config) for v in self.views}
        )
        self.heads = nn.ModuleDict(
            {v: nn.Linear(len(self.groups) * dim, dims.num_outputs) for v in self.views}
        )
        self.output_dim = len(self.groups) * dim

    def encode_omics(self, omics: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """One [B, dim] embedding per gene group."""
        if self.omics_encoder is None:
            return {g: self.omics[g](omics[g]) for g in self.groups}
        tokens = self.omics_encoder(omics)
        order = list(getattr(self.omics_encoder, "groups", self.groups))
        if tokens.dim() != 3 or tokens.shape[1] != len(order) or sorted(order) != sorted(self.groups):
            raise HistoError(
                f"fusion 'dmf' needs one omics token per gene group {self.groups}; the omics_encoder gave "
                f"shape {tuple(tokens.shape)}: use a per-group encoder (snn with per_group: true, "
                "pathway_tokens) or leave omics_encoder out to use the paper's SNNs"
            )
        tokens = self.omics_project(tokens)
        return {g: tokens[:, order.index(g)] for g in self.groups}

    def _compares_full_maps(self, batch: Mapping[str, Any]) -> bool:
        """`auto`: the released loss where it is defined (one N at every magnification), else query-mean."""
        if self.config.consistency != "auto":
            return self.config.consistency == "full_map"
        return len({batch["features"][view].shape[1] for view in self.views}) == 1

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        omics = self.encode_omics(batch["omics"])
        full_maps: dict[str, dict[str, Tensor]] = {}
        consistency = len(self.views) > 1 and self.config.consistency_weight > 0
        full_map = consistency and self._compares_full_maps(batch)
        subspaces, summaries, embeddings, view_logits, attention, group_attention = {}, {}, {}, {}, {}, {}
        for view in self.views:
            layout = view_layout(batch, view, self.config)
            self.branches[view].keep_maps = full_map
            features, summary, patches, maps = self.branches[view](batch["features"][view], layout, omics)
            full_maps[view] = maps
            subspaces[view] = features
            summaries[view] = summary
            embeddings[view] = torch.cat([features[g] for g in self.groups], dim=1)
            view_logits[view] = self.heads[view](embeddings[view])
            group_attention[view] = patches
            attention[view] = torch.stack(list(patches.values())).mean(0)
        out: dict[str, Any] = {
            "logits": combine_views(list(view_logits.values()), self.config.combine, self.config.confidence),
            "view_logits": view_logits,
            "subspaces": subspaces,
            "view_embeddings": embeddings,
            "attention": attention,
            "group_attention": group_attention,
            "key_attention": summaries,
        }
        if full_map:
            check_full_maps(full_maps)
        if consistency:
            compared = full_maps if full_map else summaries
            out["aux_loss"] = magnification_consistency(compared, self.config.consistency_weight)
        return out


class DmfBuilder:
    def __init__(self, config: DmfConfig) -> None:
        self.config = config

    def build(
        self, dims: ModelDims, slide_encoder: SlideEncoder | None, omics_encoder: OmicsEncoder | None
    ) -> nn.Module:
        require_slides(dims, "dmf")
        require_omics(dims, "fusion 'dmf'")
        if slide_encoder is not None:
            raise HistoError(
                "fusion 'dmf' brings its own patch branch (deformable cross-attention): remove "
                "model.slide_encoder from the recipe"
            )
        return DmfTeacher(dims, self.config, omics_encoder.build(dims) if omics_encoder is not None else None)
