"""Classical models (kind `classical_models`): the baselines a lab compares a deep model with, fitted by
the `classical` stage on exactly the deep models' folds, preprocessing and exclusions.

- `logistic_l2`, `logistic_elasticnet`: multinomial logistic regression (scikit-learn);
- `coxnet`, `cox_ph`, `random_survival_forest`: survival models (scikit-survival).

Hyperparameters are chosen by inner cross-validation on each fold's training part only (docs/classical.md
lists the grids). Only configs are imported here; scikit-learn loads when a model is built.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from histo import ComponentSpec, hookimpl

from .configs import (
    CoxnetConfig,
    CoxPHConfig,
    LogisticElasticNetConfig,
    LogisticL2Config,
    RandomSurvivalForestConfig,
)


def _logistic_l2(config: LogisticL2Config) -> Any:
    from .linear import logistic_l2

    return logistic_l2(config)


def _logistic_elasticnet(config: LogisticElasticNetConfig) -> Any:
    from .linear import logistic_elasticnet

    return logistic_elasticnet(config)


def _coxnet(config: CoxnetConfig) -> Any:
    from .survival import coxnet

    return coxnet(config)


def _cox_ph(config: CoxPHConfig) -> Any:
    from .survival import cox_ph

    return cox_ph(config)


def _rsf(config: RandomSurvivalForestConfig) -> Any:
    from .survival import random_survival_forest

    return random_survival_forest(config)


SPECS: tuple[ComponentSpec[Any], ...] = (
    ComponentSpec(
        "logistic_l2", _logistic_l2, LogisticL2Config,
        "L2 logistic regression (multinomial), C chosen by inner CV on macro AUC",
    ),
    ComponentSpec(
        "logistic_elasticnet", _logistic_elasticnet, LogisticElasticNetConfig,
        "elastic-net logistic regression (multinomial, saga), C and l1_ratio chosen by inner CV",
    ),
    ComponentSpec(
        "coxnet", _coxnet, CoxnetConfig,
        "elastic-net Cox (scikit-survival Coxnet), alpha along its path chosen by inner CV on C-index",
    ),
    ComponentSpec(
        "cox_ph", _cox_ph, CoxPHConfig,
        "ridge Cox proportional hazards on principal components, penalty chosen by inner CV",
    ),
    ComponentSpec(
        "random_survival_forest", _rsf, RandomSurvivalForestConfig,
        "random survival forest (scikit-survival), leaf size chosen by inner CV on C-index",
    ),
)  # fmt: skip


@hookimpl
def histo_classical_models() -> Iterable[ComponentSpec[Any]]:
    return list(SPECS)
