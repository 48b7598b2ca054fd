"""The paper's models (Zhang et al., IEEE TMI 2026): the `dmf` teacher fusion and the `dmf_student`
slide encoder, both built on deformable attention over the patch grid. Torch is imported lazily."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from histo import ComponentSpec, hookimpl

from .configs import DmfConfig, DmfStudentConfig


def _builder(module: str, cls: str) -> Any:
    def factory(config: Any) -> Any:
        import importlib

        return getattr(importlib.import_module(f"histo.plugins.paper.{module}"), cls)(config)

    return factory


@hookimpl
def histo_fusion_strategies() -> Iterable[ComponentSpec[Any]]:
    return [
        ComponentSpec(
            "dmf",
            _builder("teacher", "DmfBuilder"),
            DmfConfig,
            "the paper's teacher: gene-guided deformable cross-attention per gene group and magnification, "
            "disentangled subspace features, inter-magnification consistency loss",
        )
    ]


@hookimpl
def histo_slide_encoders() -> Iterable[ComponentSpec[Any]]:
    return [
        ComponentSpec(
            "dmf_student",
            _builder("student", "DmfStudentBuilder"),
            DmfStudentConfig,
            "the paper's WSI-only student: deformable self-attention, then informative token aggregation",
        )
    ]
