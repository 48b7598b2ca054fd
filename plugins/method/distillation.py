"""Distillers: the loss that pulls the WSI-only student towards the frozen multi-modal teacher.

Pairs are made per view (magnification) present in both models' outputs; a view only one model has is
skipped. Without per-view outputs on either side, the combined "logits" are paired instead. The terms
of all views are summed (the paper: KD(s10, t10) + KD(s20, t20)).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from histo.errors import HistoError

from .configs import LogitKdConfig, SubspaceKdConfig


def softmax_kd(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """KL(softmax(t/T) || softmax(s/T)) * T^2, summed over classes, averaged over the batch."""
    log_student = F.log_softmax(student / temperature, dim=1)
    target = F.softmax(teacher / temperature, dim=1)
    return F.kl_div(log_student, target, reduction="batchmean") * temperature**2


def hazard_kd(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """Bernoulli KL of sigmoid(t/T) against sigmoid(s/T) per time bin, summed over bins, batch mean, * T^2.

    Hazard heads give one independent event probability per bin, not a distribution over bins, so
    each bin is a two-outcome distribution (event / no event in that bin).
    """
    s, t = student / temperature, teacher / temperature
    p = torch.sigmoid(t)
    log_p, log_not_p = F.logsigmoid(t), F.logsigmoid(-t)
    log_q, log_not_q = F.logsigmoid(s), F.logsigmoid(-s)
    kl = p * (log_p - log_q) + (1 - p) * (log_not_p - log_not_q)
    return kl.sum(dim=1).mean() * temperature**2


def _views(outputs: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = outputs.get(key)
    return value if isinstance(value, Mapping) else {}


def paired_logits(student: Mapping[str, Any], teacher: Mapping[str, Any]) -> list[tuple[str, Tensor, Tensor]]:
    """(view, student logits, teacher logits) for every view in both; else the combined logits."""
    s_views, t_views = _views(student, "view_logits"), _views(teacher, "view_logits")
    if s_views and t_views:
        return [(view, s_views[view], t_views[view]) for view in s_views if view in t_views]
    if "logits" in student and "logits" in teacher:
        return [("logits", student["logits"], teacher["logits"])]
    return []


def teacher_subspace_target(subspaces: Mapping[str, Tensor]) -> Tensor:
    """Concatenation of one view's subspace features in the teacher's group order [B, G*E]."""
    return torch.cat(list(subspaces.values()), dim=1)


class LogitKd:
    """alpha * KD on the logits of each view both models have."""

    def __init__(self, config: LogitKdConfig) -> None:
        self.config = config
        self._kd = softmax_kd if config.logits == "softmax" else hazard_kd

    def logit_terms(self, student: Mapping[str, Any], teacher: Mapping[str, Any]) -> list[Tensor]:
        terms = []
        for view, s, t in paired_logits(student, teacher):
            if s.shape != t.shape:
                raise HistoError(
                    f"distiller: view {view!r} has student logits {tuple(s.shape)} but teacher logits "
                    f"{tuple(t.shape)}; both must predict the same task"
                )
            terms.append(self.config.alpha * self._kd(s, t.detach().to(s.dtype), self.config.temperature))
        return terms

    def __call__(self, student: Mapping[str, Any], teacher: Mapping[str, Any]) -> Tensor:
        return _total(self.logit_terms(student, teacher), student, teacher)


class SubspaceKd(LogitKd):
    """Per view: alpha * KD(logits) + beta * MSE(student embedding, concat of the teacher's subspaces)."""

    config: SubspaceKdConfig

    def __init__(self, config: SubspaceKdConfig) -> None:
        super().__init__(config)

    def feature_terms(self, student: Mapping[str, Any], teacher: Mapping[str, Any]) -> list[Tensor]:
        embeddings, subspaces = _views(student, "view_embeddings"), _views(teacher, "subspaces")
        terms = []
        for view, embedding in embeddings.items():
            if view not in subspaces:
                continue
            target = teacher_subspace_target(subspaces[view]).detach().to(embedding.dtype)
            if embedding.shape != target.shape:
                raise HistoError(
                    f"distiller 'subspace_kd': view {view!r}: the student's embedding has shape "
                    f"{tuple(embedding.shape)} but the teacher's concatenated subspaces "
                    f"{tuple(target.shape)}; "
                    "set the student's tokens x width to the teacher's groups x subspace width"
                )
            terms.append(self.config.beta * F.mse_loss(embedding, target))
        return terms

    def __call__(self, student: Mapping[str, Any], teacher: Mapping[str, Any]) -> Tensor:
        terms = self.logit_terms(student, teacher) + self.feature_terms(student, teacher)
        return _total(terms, student, teacher)


def _total(terms: list[Tensor], student: Mapping[str, Any], teacher: Mapping[str, Any]) -> Tensor:
    if not terms:
        student_views = sorted(_views(student, "view_logits"))
        teacher_views = sorted(_views(teacher, "view_logits"))
        raise HistoError(
            "distiller: the student and the teacher share no view to distil (student views "
            f"{student_views}, teacher views {teacher_views}); "
            "train both on the same magnifications"
        )
    return torch.stack(terms).sum()
