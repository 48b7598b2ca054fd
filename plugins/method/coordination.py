"""Confidence-guided gradient coordination of the teacher's subspace heads.

The head of each view reads the concatenation of G subspace features, so its weight W [C, G*E] splits
into column blocks W_g. Each subspace alone gives logits out_g = feature_g W_g^T + b/G and a
confidence s_g = sum over the batch of softmax(out_g)[i, y_i]. Where, in class row c, the gradient
blocks of two subspaces point against each other (cosine < 0), the less confident subspace yields: its
block is replaced by its projection onto the normal plane of the more confident one's block.

More than two groups (a pairwise rule that reduces to the above for two): every block is projected,
in turn, away from the original block of each strictly more confident group it conflicts with, the most
confident first. The most confident group is never changed; groups of equal confidence leave each
other alone (with two groups and a tie, nothing changes, as in the released code).

Called after backward, when DDP has already averaged the gradients: the confidences are summed over
all processes before they are compared, so every rank makes the same choice and the replicas stay equal.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from histo.errors import HistoError

from .configs import ConfidenceCoordinatorConfig, NoCoordinationConfig


def subspace_body(model: nn.Module) -> nn.Module:
    """The module holding `heads` (ModuleDict view -> Linear) and `groups` (column-block order).

    Accepts the model itself, the engine's `Predictor` (its `.body`) and DDP wrappers (`.module`).
    """
    seen: list[nn.Module] = []
    queue: list[Any] = [model]
    while queue:
        candidate = queue.pop(0)
        if not isinstance(candidate, nn.Module) or any(candidate is s for s in seen):
            continue
        seen.append(candidate)
        if isinstance(getattr(candidate, "heads", None), nn.ModuleDict) and hasattr(candidate, "groups"):
            return candidate
        queue.extend(getattr(candidate, attr, None) for attr in ("module", "body"))
    raise HistoError(
        f"gradient coordinator 'confidence' needs a model with per-view subspace heads "
        f"(`heads`: ModuleDict of Linear layers and `groups`: the subspace order), but "
        f"{type(model).__name__} has none: use a fusion that produces subspaces (the paper's teacher) "
        "or set the coordinator to `none`"
    )


def subspace_heads(model: nn.Module) -> tuple[list[str], dict[str, nn.Linear]]:
    """(group order, {view: linear head}) of the model's subspace body."""
    body = subspace_body(model)
    groups = [str(g) for g in getattr(body, "groups")]  # noqa: B009 (attributes mypy cannot see)
    heads: dict[str, nn.Linear] = {}
    for view, head in getattr(body, "heads").items():  # noqa: B009
        if not isinstance(head, nn.Linear):
            raise HistoError(
                f"gradient coordinator 'confidence': head {view!r} is a {type(head).__name__}, not a "
                "Linear layer over the concatenated subspaces"
            )
        heads[view] = head
    return groups, heads


def class_targets(targets: Tensor, num_classes: int) -> Tensor:
    """Class index per sample: classification targets [B], or the time bin of survival targets [B, 3]."""
    index = targets[:, 0] if targets.ndim == 2 else targets
    return index.long().clamp(0, num_classes - 1)


def subspace_confidence(features: list[Tensor], weight: Tensor, bias: Tensor | None, y: Tensor) -> Tensor:
    """s_g = sum_i softmax(feature_g W_g^T + b/G)[i, y_i] for each of the G groups -> [G]."""
    groups = len(features)
    blocks = weight.detach().chunk(groups, dim=1)
    share = 0.0 if bias is None else bias.detach() / groups
    scores = []
    for feature, block in zip(features, blocks, strict=True):
        probabilities = F.softmax(feature.detach().to(block.dtype) @ block.T + share, dim=1)
        scores.append(probabilities.gather(1, y.unsqueeze(1)).sum())
    return torch.stack(scores)


def _project(g: Tensor, h: Tensor, conflict: Tensor, mode: str) -> Tensor:
    """Rows of g [C, E] where `conflict` holds, moved off h's direction; the other rows unchanged."""
    h_sq = (h * h).sum(1, keepdim=True).clamp_min(torch.finfo(h.dtype).tiny)
    removed = (g * h).sum(1, keepdim=True) / h_sq * h
    projected = g - removed
    if mode == "reference":  # subtract again (a reflection) and keep the once-projected norm
        reflected = projected - removed
        norm = reflected.norm(dim=1, keepdim=True)
        projected = torch.where(
            norm > 0, reflected * projected.norm(dim=1, keepdim=True) / norm.clamp_min(1e-30), projected
        )
    return torch.where(conflict.unsqueeze(1), projected, g)


def coordinate_blocks(blocks: Tensor, confidence: Tensor, mode: str = "plain") -> Tensor:
    """Coordinated copy of the head gradient split into blocks [C, G, E], given confidences [G]."""
    original = blocks
    result = blocks.clone()
    order = torch.sort(confidence, descending=True, stable=True).indices.tolist()
    for position, weaker in enumerate(order):
        g = result[:, weaker]
        for stronger in order[:position]:
            if not confidence[stronger] > confidence[weaker]:
                continue
            h = original[:, stronger]
            conflict = (g * h).sum(1) < 0  # cosine < 0 (zero blocks never conflict)
            g = _project(g, h, conflict, mode)
        result[:, weaker] = g
    return result


def _all_reduce_sum(value: Tensor) -> Tensor:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


class ConfidenceCoordinator:
    """The paper's gradient coordination (`mode` plain or reference), on every view's head."""

    def __init__(self, config: ConfidenceCoordinatorConfig) -> None:
        self.mode = config.mode

    def coordinate(self, model: nn.Module, outputs: Any, targets: Tensor) -> None:
        groups, heads = subspace_heads(model)
        subspaces = outputs.get("subspaces") if hasattr(outputs, "get") else None
        if not subspaces:
            raise HistoError("gradient coordinator 'confidence': the model's outputs have no 'subspaces'")
        confidences = []
        for view, head in heads.items():
            if view not in subspaces:
                raise HistoError(
                    f"gradient coordinator 'confidence': outputs['subspaces'] lacks view {view!r} "
                    f"(has {sorted(subspaces)})"
                )
            missing = [g for g in groups if g not in subspaces[view]]
            if missing:
                raise HistoError(
                    f"gradient coordinator 'confidence': outputs['subspaces'][{view!r}] lacks the "
                    f"groups {missing}"
                )
            if head.out_features < 2:
                raise HistoError(
                    f"gradient coordinator 'confidence': head {view!r} has one output (a Cox head?); "
                    "subspace confidences need class or time-bin probabilities: use the 'nll' survival "
                    "loss or set the coordinator to `none`"
                )
            if head.in_features % len(groups):
                raise HistoError(
                    f"gradient coordinator 'confidence': head {view!r} has {head.in_features} inputs, "
                    f"not a multiple of its {len(groups)} subspaces"
                )
            y = class_targets(targets.to(head.weight.device), head.out_features)
            features = [subspaces[view][g] for g in groups]
            confidences.append(subspace_confidence(features, head.weight, head.bias, y))
        total = _all_reduce_sum(torch.stack(confidences))  # one collective for all views
        for (_, head), confidence in zip(heads.items(), total, strict=True):
            grad = head.weight.grad
            if grad is None:
                continue
            blocks = grad.reshape(grad.shape[0], len(groups), -1)
            grad.copy_(coordinate_blocks(blocks, confidence, self.mode).reshape(grad.shape))


class NoCoordination:
    """Leaves gradients untouched (the baseline)."""

    def __init__(self, config: NoCoordinationConfig) -> None:
        self.config = config

    def coordinate(self, model: nn.Module, outputs: Any, targets: Tensor) -> None:
        return None
