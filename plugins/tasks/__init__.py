"""Prediction tasks (kind `tasks`): label encoding, head size, loss and metrics.

- `classification`: subtype or grade from a label column, class-weighted cross-entropy.
- `survival`: right-censored time-to-event with a discrete-time NLL or a Cox head.

Only the configs are imported here; torch, torchmetrics and scikit-survival load when a task is built.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from histo import ComponentSpec, hookimpl

from .configs import ClassificationConfig, SurvivalConfig


def _classification(config: ClassificationConfig) -> Any:
    from .classification import ClassificationTask

    return ClassificationTask(config)


def _survival(config: SurvivalConfig) -> Any:
    from .survival import SurvivalTask

    return SurvivalTask(config)


SPECS: tuple[ComponentSpec[Any], ...] = (
    ComponentSpec(
        "classification",
        _classification,
        ClassificationConfig,
        "classes of a label column (subtype, grade): weighted cross-entropy; AUC, balanced accuracy, F1",
    ),
    ComponentSpec(
        "survival",
        _survival,
        SurvivalConfig,
        "right-censored survival: discrete-time NLL or Cox loss; C-index, IPCW C-index, td-AUC, IBS",
    ),
)


@hookimpl
def histo_tasks() -> Iterable[ComponentSpec[Any]]:
    return list(SPECS)
