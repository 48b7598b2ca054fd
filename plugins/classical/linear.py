"""L2 and elastic-net logistic regression (scikit-learn), multinomial over the task's classes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from histo.interfaces import InnerSplit

from .configs import LogisticElasticNetConfig, LogisticL2Config
from .search import full_probabilities, grid_search, quiet


def _logistic(c: float, l1_ratio: float, class_weight: str, max_iter: int, seed: int) -> Any:
    """A LogisticRegression with this penalty, across scikit-learn versions (`penalty` is deprecated
    from 1.8 on, where `l1_ratio` alone says which penalty)."""
    import sklearn
    from sklearn.linear_model import LogisticRegression

    solver = "lbfgs" if l1_ratio == 0 else "saga"
    kwargs: dict[str, Any] = {
        "C": c, "solver": solver, "max_iter": max_iter, "random_state": seed,
        "class_weight": "balanced" if class_weight == "balanced" else None,
    }  # fmt: skip
    major, minor = (int(p) for p in sklearn.__version__.split(".")[:2])
    if (major, minor) >= (1, 8):
        kwargs["l1_ratio"] = l1_ratio
    elif l1_ratio > 0:
        kwargs.update(penalty="elasticnet", l1_ratio=l1_ratio)
    return LogisticRegression(**kwargs)


class LogisticModel:
    """Logistic regression whose C (and l1_ratio) are chosen by inner CV on macro AUC."""

    tasks = ("classification",)

    def __init__(self, c_grid: Sequence[float], l1_ratios: Sequence[float], class_weight: str, max_iter: int):
        self.candidates = [{"C": float(c), "l1_ratio": float(r)} for r in l1_ratios for c in sorted(c_grid)]
        self.class_weight, self.max_iter = class_weight, max_iter
        self.estimator_: Any = None
        self.num_outputs = 0

    def fit(
        self, x: np.ndarray, y: np.ndarray, inner: Sequence[InnerSplit], *, num_outputs: int, seed: int
    ) -> dict[str, Any]:
        self.num_outputs = num_outputs

        def fit(params: dict[str, Any], xs: np.ndarray, ys: np.ndarray) -> Any:
            model = _logistic(params["C"], params["l1_ratio"], self.class_weight, self.max_iter, seed)
            return model.fit(xs, ys.astype(int))

        self.estimator_, record = grid_search(
            "classification", self.candidates, fit,
            lambda m, xs: full_probabilities(m, xs, num_outputs), x, y, inner,
        )  # fmt: skip
        record["nonzero_coefficients"] = int(np.count_nonzero(np.abs(self.estimator_.coef_).sum(0)))
        return record

    def predict(self, x: np.ndarray) -> np.ndarray:
        return quiet(full_probabilities, self.estimator_, x, self.num_outputs)  # type: ignore[no-any-return]

    def survival_function(self, x: np.ndarray, times: np.ndarray) -> np.ndarray | None:
        return None


def logistic_l2(config: LogisticL2Config) -> LogisticModel:
    return LogisticModel(config.c_grid, [0.0], config.class_weight, config.max_iter)


def logistic_elasticnet(config: LogisticElasticNetConfig) -> LogisticModel:
    return LogisticModel(config.c_grid, config.l1_ratios, config.class_weight, config.max_iter)
