"""Survival models of scikit-survival: Coxnet (elastic-net Cox, alpha along its path), ridge Cox PH on
principal components, and the random survival forest. Risk: higher means an earlier event."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from histo.interfaces import InnerSplit

from .configs import CoxnetConfig, CoxPHConfig, RandomSurvivalForestConfig
from .search import NAN, grid_search, pick, quiet, score, surv


class Coxnet:
    """Elastic-net Cox. For each l1_ratio the alpha path is fitted on all training rows; every inner split
    refits that same path on its fitting rows and scores each alpha's C-index on its held-out rows; the
    best mean (ties: the stronger penalty) wins, and the test risk is the full path's linear predictor at
    that alpha (the protocol of benchmarks/tcga_stad_coxnet.py)."""

    tasks = ("survival",)

    def __init__(self, config: CoxnetConfig) -> None:
        self.config = config
        self.coef_: np.ndarray | None = None

    def _path(self, x: np.ndarray, y: np.ndarray, l1_ratio: float, alphas: np.ndarray | None = None) -> Any:
        from sksurv.linear_model import CoxnetSurvivalAnalysis

        model = CoxnetSurvivalAnalysis(
            l1_ratio=l1_ratio, alphas=alphas, n_alphas=self.config.n_alphas,
            alpha_min_ratio=self.config.alpha_min_ratio, max_iter=self.config.max_iter,
        )  # fmt: skip
        return quiet(model.fit, x, surv(y))

    def fit(
        self, x: np.ndarray, y: np.ndarray, inner: Sequence[InnerSplit], *, num_outputs: int, seed: int
    ) -> dict[str, Any]:
        tried = []
        for l1_ratio in self.config.l1_ratios:
            full = self._path(x, y, l1_ratio)
            alphas = np.asarray(full.alphas_)
            scores = np.zeros((len(inner), len(alphas)))
            for i, (fit_rows, held_rows) in enumerate(inner):
                model = self._path(x[fit_rows], y[fit_rows], l1_ratio, alphas)
                risks = x[held_rows] @ model.coef_
                scores[i, : risks.shape[1]] = [
                    score("survival", risks[:, j], y[held_rows]) for j in range(risks.shape[1])
                ]
            means = np.nanmean(scores, axis=0) if np.isfinite(scores).any() else np.full(len(alphas), NAN)
            j = pick(means)
            tried.append((float(means[j]), l1_ratio, float(alphas[j]), full.coef_[:, j], means))
        best = pick(np.array([t[0] for t in tried]))
        _, l1_ratio, alpha, coef, _ = tried[best]
        self.coef_ = np.asarray(coef, dtype=np.float64)
        return {
            "chosen": {"l1_ratio": l1_ratio, "alpha": alpha},
            "selected_on": f"inner {len(inner)}-fold CV (c_index)",
            "inner_scores": [
                {"params": {"l1_ratio": t[1], "alpha": t[2]}, "mean": t[0] if np.isfinite(t[0]) else None}
                for t in tried
            ],
            "nonzero_coefficients": int(np.count_nonzero(self.coef_)),
        }

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.coef_ is None:
            raise RuntimeError("Coxnet.predict before fit")
        return np.asarray(x @ self.coef_, dtype=np.float64)

    def survival_function(self, x: np.ndarray, times: np.ndarray) -> np.ndarray | None:
        return None  # Breslow on the linear predictor, as for the deep Cox models


class CoxPH:
    """Ridge-penalised Cox proportional hazards on the first principal components of the inputs."""

    tasks = ("survival",)

    def __init__(self, config: CoxPHConfig) -> None:
        self.config = config
        self.estimator_: Any = None

    def _fit(self, params: dict[str, Any], x: np.ndarray, y: np.ndarray) -> Any:
        from sklearn.decomposition import PCA
        from sklearn.pipeline import make_pipeline
        from sksurv.linear_model import CoxPHSurvivalAnalysis

        cox = CoxPHSurvivalAnalysis(alpha=params["alpha"], ties=self.config.ties, n_iter=self.config.n_iter)
        k = self.config.components
        if k is None or k >= min(x.shape):
            return cox.fit(x, surv(y))
        return make_pipeline(PCA(n_components=k, random_state=0), cox).fit(x, surv(y))

    def fit(
        self, x: np.ndarray, y: np.ndarray, inner: Sequence[InnerSplit], *, num_outputs: int, seed: int
    ) -> dict[str, Any]:
        candidates = [{"alpha": float(a)} for a in self.config.alphas]
        self.estimator_, record = grid_search(
            "survival", candidates, self._fit, lambda m, xs: m.predict(xs), x, y, inner
        )
        record["components"] = self.config.components
        return record

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.estimator_.predict(x), dtype=np.float64)

    def survival_function(self, x: np.ndarray, times: np.ndarray) -> np.ndarray | None:
        return None


class RandomSurvivalForest:
    """scikit-survival's random survival forest; risk is its ensemble mortality (summed cumulative hazard),
    S(t) its own step function."""

    tasks = ("survival",)

    def __init__(self, config: RandomSurvivalForestConfig) -> None:
        self.config = config
        self.estimator_: Any = None
        self.seed = 0

    def _fit(self, params: dict[str, Any], x: np.ndarray, y: np.ndarray) -> Any:
        from sksurv.ensemble import RandomSurvivalForest as RSF

        forest = RSF(
            n_estimators=self.config.n_estimators, min_samples_leaf=params["min_samples_leaf"],
            max_features=self.config.max_features, n_jobs=self.config.n_jobs, random_state=self.seed,
        )  # fmt: skip
        return forest.fit(x, surv(y))

    def fit(
        self, x: np.ndarray, y: np.ndarray, inner: Sequence[InnerSplit], *, num_outputs: int, seed: int
    ) -> dict[str, Any]:
        self.seed = seed
        candidates = [{"min_samples_leaf": int(m)} for m in self.config.min_samples_leaf]
        self.estimator_, record = grid_search(
            "survival", candidates, self._fit, lambda m, xs: m.predict(xs), x, y, inner
        )
        return record

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.estimator_.predict(x), dtype=np.float64)

    def survival_function(self, x: np.ndarray, times: np.ndarray) -> np.ndarray | None:
        steps = self.estimator_.predict_survival_function(x, return_array=True)  # at unique_times_
        grid = np.asarray(self.estimator_.unique_times_, dtype=np.float64)
        index = np.searchsorted(grid, np.asarray(times, dtype=np.float64), side="right") - 1
        values = np.ones((len(x), len(times)))
        inside = index >= 0
        values[:, inside] = steps[:, index[inside]]
        return values


def coxnet(config: CoxnetConfig) -> Coxnet:
    return Coxnet(config)


def cox_ph(config: CoxPHConfig) -> CoxPH:
    return CoxPH(config)


def random_survival_forest(config: RandomSurvivalForestConfig) -> RandomSurvivalForest:
    return RandomSurvivalForest(config)
