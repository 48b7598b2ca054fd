"""What is fitted per fold, on the training patients only: gene filter, scaler, survival bins, class weights.

Each transform has `fit(train)` then `transform(any)`; nothing in `transform` looks at the rows it is
given to decide how to transform them, so validation and test rows never shape the fitted state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from histo.errors import HistoError

from .table import few

if TYPE_CHECKING:
    from .omics import OmicsTable

CONSTANT_STD = 1e-8


class OmicsPreprocessConfig(BaseModel):
    """Per-fold preprocessing of the expression table, fitted on the fold's training patients."""

    model_config = ConfigDict(extra="forbid")

    standardize: bool = Field(
        default=True,
        description="z-score every gene with the training patients' mean and standard deviation; genes "
        "constant on the training patients are dropped (and reported).",
    )
    top_k_variance: int | None = Field(
        default=None,
        ge=1,
        description="Keep the k genes of each group with the largest variance on the training patients.",
    )


def _not_fitted(name: str) -> RuntimeError:
    return RuntimeError(f"{name}.transform called before fit")


def _check_genes(frame: pd.DataFrame, genes: Sequence[str], who: str) -> None:
    missing = [g for g in genes if g not in frame.columns]
    if missing:
        raise HistoError(f"{who}: the table lacks {len(missing)} gene(s) it was fitted on: {few(missing)}")


class OmicsScaler:
    """Per-gene z-score with the training rows' mean and (population) standard deviation."""

    def __init__(self, drop_constant: bool = True) -> None:
        self.drop_constant = drop_constant
        self.mean_: pd.Series | None = None
        self.std_: pd.Series | None = None
        self.dropped_: list[str] = []

    def fit(self, train: pd.DataFrame) -> OmicsScaler:
        if train.empty:
            raise HistoError("OmicsScaler: no training patients to fit on")
        values = train.astype(float)
        if not np.isfinite(values.to_numpy()).all():
            raise HistoError("OmicsScaler: the training rows hold missing or infinite values")
        mean, std = values.mean(axis=0), values.std(axis=0, ddof=0)
        constant = std <= CONSTANT_STD * np.maximum(1.0, mean.abs())
        self.dropped_ = constant.index[constant].tolist() if self.drop_constant else []
        keep = ~constant if self.drop_constant else pd.Series(True, index=std.index)
        self.mean_, self.std_ = mean[keep], std[keep].where(~constant[keep], 1.0)
        return self

    @property
    def genes_(self) -> list[str]:
        if self.mean_ is None:
            raise _not_fitted("OmicsScaler")
        return self.mean_.index.tolist()

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        if self.mean_ is None or self.std_ is None:
            raise _not_fitted("OmicsScaler")
        _check_genes(frame, self.genes_, "OmicsScaler")
        return (frame[self.genes_].astype(float) - self.mean_) / self.std_


class VarianceFilter:
    """Keep the `top_k` genes with the largest variance on the training rows (ties: table order)."""

    def __init__(self, top_k: int) -> None:
        if top_k < 1:
            raise ValueError("top_k must be >= 1")
        self.top_k = top_k
        self.genes_: list[str] | None = None

    def fit(self, train: pd.DataFrame) -> VarianceFilter:
        if train.empty:
            raise HistoError("VarianceFilter: no training patients to fit on")
        variance = train.astype(float).var(axis=0, ddof=0).to_numpy()
        order = np.argsort(-variance, kind="stable")[: self.top_k]
        self.genes_ = [train.columns[i] for i in sorted(order)]
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        if self.genes_ is None:
            raise _not_fitted("VarianceFilter")
        _check_genes(frame, self.genes_, "VarianceFilter")
        return frame[self.genes_]


class SurvivalBins:
    """Discrete-time bins: inner edges at quantiles of the *uncensored training* times (MCAT's rule, per
    fold), outer edges 0 and +inf. Bin b holds times in [edges[b], edges[b+1])."""

    def __init__(self, n_bins: int = 4) -> None:
        if n_bins < 1:
            raise ValueError("n_bins must be >= 1")
        self.n_bins = n_bins
        self.edges_: np.ndarray | None = None

    def fit(self, train: pd.DataFrame) -> SurvivalBins:
        """`train` has columns `time` and `event` (1 = event observed), as `Cohort.patients` does."""
        times = train.loc[train["event"].astype(int) == 1, "time"].astype(float).to_numpy()
        if len(times) < self.n_bins:
            raise HistoError(
                f"SurvivalBins: {len(times)} uncensored training patient(s) cannot define "
                f"{self.n_bins} bins; use fewer bins or a larger training set"
            )
        inner = np.quantile(times, np.arange(1, self.n_bins) / self.n_bins)
        if len(np.unique(inner)) < len(inner):
            raise HistoError(
                f"SurvivalBins: the training event times tie at bin edges {np.round(inner, 4)}; "
                "use fewer bins"
            )
        self.edges_ = np.concatenate([[0.0], inner, [np.inf]])
        return self

    def transform(self, frame: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Bin index (int64) of each time; censored and uncensored alike."""
        if self.edges_ is None:
            raise _not_fitted("SurvivalBins")
        times = (
            frame["time"].to_numpy(dtype=float)
            if isinstance(frame, pd.DataFrame)
            else np.asarray(frame, float)
        )
        return np.searchsorted(self.edges_[1:-1], times, side="right").astype(np.int64)


class ClassWeights:
    """'balanced' weights n / (k * count_c) from the training labels' counts."""

    def __init__(self, classes: Sequence[Any] | None = None) -> None:
        self.classes = list(classes) if classes is not None else None
        self.classes_: list[Any] | None = None
        self.weights_: np.ndarray | None = None

    def fit(self, train: pd.Series) -> ClassWeights:
        counts = train.value_counts()
        classes = self.classes if self.classes is not None else sorted(counts.index.tolist())
        absent = [c for c in classes if counts.get(c, 0) == 0]
        if absent:
            raise HistoError(
                f"ClassWeights: class(es) {few(absent)} have no training patient in this fold; "
                "use fewer folds, merge rare classes or stratify the splits by label"
            )
        unknown = [c for c in counts.index if c not in classes]
        if unknown:
            raise HistoError(
                f"ClassWeights: training labels {few(unknown)} are not among the classes {classes}"
            )
        n = int(counts.sum())
        self.classes_ = classes
        self.weights_ = np.array([n / (len(classes) * counts[c]) for c in classes], dtype=np.float64)
        return self

    def transform(self, labels: pd.Series) -> np.ndarray:
        """The weight of each label's class (per sample)."""
        if self.classes_ is None or self.weights_ is None:
            raise _not_fitted("ClassWeights")
        index = {c: i for i, c in enumerate(self.classes_)}
        unknown = sorted({str(v) for v in labels if v not in index})
        if unknown:
            raise HistoError(
                f"ClassWeights: labels {few(unknown)} are not among the fitted classes {self.classes_}"
            )
        return self.weights_[[index[v] for v in labels]]


class OmicsPipeline:
    """Per group: optional top-k variance filter, then a shared scaler; all fitted on training patients."""

    def __init__(self, config: OmicsPreprocessConfig | None = None) -> None:
        self.config = config or OmicsPreprocessConfig()
        self.filters_: dict[str, VarianceFilter] = {}
        self.scaler_: OmicsScaler | None = None
        self.groups_: dict[str, list[str]] | None = None

    @staticmethod
    def _rows(table: OmicsTable, ids: Sequence[str], what: str) -> pd.DataFrame:
        missing = [p for p in ids if p not in table.data.index]
        if missing:
            raise HistoError(
                f"{table.file}: {len(missing)} {what} patient(s) have no expression row "
                f"({few(missing)}); restrict the fold to patients with omics"
            )
        return table.data.loc[list(ids)]

    def fit(self, table: OmicsTable, train_ids: Sequence[str]) -> OmicsPipeline:
        train = self._rows(table, train_ids, "training")
        groups = dict(table.groups)
        if self.config.top_k_variance is not None:
            self.filters_ = {
                g: VarianceFilter(self.config.top_k_variance).fit(train[genes]) for g, genes in groups.items()
            }
            groups = {g: f.genes_ or [] for g, f in self.filters_.items()}
        used = list(dict.fromkeys(g for genes in groups.values() for g in genes))
        if self.config.standardize:
            self.scaler_ = OmicsScaler().fit(train[used])
            kept = set(self.scaler_.genes_)
            groups = {g: [x for x in genes if x in kept] for g, genes in groups.items()}
            emptied = [g for g, genes in groups.items() if not genes]
            if emptied:
                raise HistoError(
                    f"{table.file}: gene group {emptied[0]!r} has only genes that are constant on "
                    "the training patients; nothing is left to learn from"
                )
        self.groups_ = groups
        return self

    def transform(self, table: OmicsTable, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Group -> [len(ids), genes] float32, in the order of `ids`."""
        if self.groups_ is None:
            raise _not_fitted("OmicsPipeline")
        rows = self._rows(table, ids, "requested")
        if self.scaler_ is not None:
            rows = self.scaler_.transform(rows)
        return {g: rows[genes].to_numpy(dtype=np.float32) for g, genes in self.groups_.items()}

    def report(self) -> dict[str, Any]:
        if self.groups_ is None:
            raise _not_fitted("OmicsPipeline")
        return {
            "genes_per_group": {g: len(genes) for g, genes in self.groups_.items()},
            "constant_on_train": list(self.scaler_.dropped_) if self.scaler_ is not None else [],
        }
