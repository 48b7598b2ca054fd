"""The paper's method components: token aggregators (student), gradient coordinators (teacher) and
distillers (teacher -> student). Torch is imported inside the factories, not here."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from histo import ComponentSpec, hookimpl

from .configs import (
    ConfidenceCoordinatorConfig,
    DpcKnnConfig,
    LogitKdConfig,
    NoAggregationConfig,
    NoCoordinationConfig,
    SubspaceKdConfig,
    TopkConfig,
)


def _factory(module: str, cls: str) -> Any:
    def factory(config: Any) -> Any:
        import importlib

        return getattr(importlib.import_module(f"histo.plugins.method.{module}"), cls)(config)

    return factory


@hookimpl
def histo_token_aggregators() -> Iterable[ComponentSpec[Any]]:
    return [
        ComponentSpec(
            "dpc_knn",
            _factory("aggregators", "DpcKnnBuilder"),
            DpcKnnConfig,
            "TCFormer cluster-merge: DPC-kNN density-peak centres, score-weighted merge; chunked, "
            "runs on 100,000-patch bags",
        ),
        ComponentSpec(
            "topk_merge",
            _factory("aggregators", "TopkBuilder"),
            TopkConfig,
            "the K highest-scoring tokens are centres, every token merges into its nearest (ablation)",
        ),
        ComponentSpec(
            "none",
            _factory("aggregators", "MeanTokenBuilder"),
            NoAggregationConfig,
            "aggregation off: one token, the masked mean of the patch tokens (ablation)",
        ),
    ]


@hookimpl
def histo_gradient_coordinators() -> Iterable[ComponentSpec[Any]]:
    return [
        ComponentSpec(
            "confidence",
            _factory("coordination", "ConfidenceCoordinator"),
            ConfidenceCoordinatorConfig,
            "confidence-guided projection of conflicting subspace-head gradients (the paper)",
        ),
        ComponentSpec(
            "none",
            _factory("coordination", "NoCoordination"),
            NoCoordinationConfig,
            "leave the gradients as they are (baseline)",
        ),
    ]


@hookimpl
def histo_distillers() -> Iterable[ComponentSpec[Any]]:
    return [
        ComponentSpec(
            "subspace_kd",
            _factory("distillation", "SubspaceKd"),
            SubspaceKdConfig,
            "KD on each view's logits plus MSE of the student's tokens to the teacher's subspaces "
            "(the paper)",
        ),
        ComponentSpec(
            "logit_kd",
            _factory("distillation", "LogitKd"),
            LogitKdConfig,
            "KD on each view's logits only",
        ),
    ]
