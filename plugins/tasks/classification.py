"""Classification task: explicit class order, class weights from the training part, torchmetrics metrics."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from histo.errors import HistoError

from .configs import ClassificationConfig, check_class_labels, label_text
from .labels import require_columns, require_usable
from .losses import weighted_cross_entropy
from .metrics import Evaluation, classification_metrics

TASK = "classification"


class ClassificationTask:
    """Softmax over `classes` (one logit each, in config order) with class-weighted cross-entropy."""

    def __init__(self, config: ClassificationConfig) -> None:
        self.config = config
        self.classes: list[str] = list(config.classes)
        self.num_outputs = len(self.classes)
        self._index = {name: i for i, name in enumerate(self.classes)}
        self.class_weights: np.ndarray | None = (
            np.ones(self.num_outputs) if config.class_weights == "none" else None
        )
        self.train_counts: dict[str, int] | None = None
        self.fit_notes: list[str] = []  # about the last fit (a class absent from training)
        self.notes: list[str] = []  # about the last evaluation (why a metric is NaN)

    # -- labels ----------------------------------------------------------------------------------
    def usable(self, labels: pd.DataFrame) -> pd.Series:
        require_columns(labels, [self.config.column], TASK, "column")
        allowed = ", ".join(self.classes)
        column = self.config.column

        def reason(value: Any) -> str:
            if pd.isna(value):
                return f"missing value in column {column!r}"
            text = label_text(value)
            if text not in self._index:
                return f"value {text!r} in column {column!r} is not one of the classes [{allowed}]"
            return ""

        return labels[column].map(reason).astype(object).rename("reason")

    def check_labels(self, labels: pd.DataFrame, source: str = "the label table") -> list[str]:
        """Problems between the listed classes and the cohort's values (see `check_class_labels`)."""
        return check_class_labels(self.config, labels, source)

    def fit(self, train_labels: pd.DataFrame) -> None:
        """Class weights n / (k * count_c) from the training rows only (a class absent counts as 1)."""
        usable = self.usable(train_labels)
        train = self.encode(train_labels[usable == ""])
        if train.size == 0:
            raise HistoError(f"{TASK} task: no training patient has a usable {self.config.column!r} label")
        counts = np.bincount(train, minlength=self.num_outputs)
        self.train_counts = {name: int(c) for name, c in zip(self.classes, counts, strict=True)}
        self.fit_notes = []
        if (counts == 0).any():
            absent = ", ".join(n for n, c in self.train_counts.items() if c == 0)
            self.fit_notes.append(f"class(es) {absent} absent from the training part of this fold")
        if self.config.class_weights == "balanced":
            self.class_weights = train.size / (self.num_outputs * np.maximum(counts, 1)).astype(np.float64)

    def encode(self, labels: pd.DataFrame) -> np.ndarray:
        require_usable(self.usable(labels), TASK)
        values = labels[self.config.column].map(label_text)
        return np.asarray([self._index[v] for v in values], dtype=np.int64)

    # -- training --------------------------------------------------------------------------------
    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        if self.class_weights is None:
            raise RuntimeError("classification task: call fit(train_labels) before loss() (balanced weights)")
        return weighted_cross_entropy(logits, targets, torch.as_tensor(self.class_weights))

    # -- outputs ---------------------------------------------------------------------------------
    def predict(self, logits: np.ndarray) -> dict[str, np.ndarray]:
        logits = np.asarray(logits, dtype=np.float64)
        shifted = logits - logits.max(axis=1, keepdims=True)
        probabilities = np.exp(shifted)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        predicted = probabilities.argmax(axis=1)
        return {
            "probabilities": probabilities,
            "predicted": predicted,
            "predicted_class": np.asarray(self.classes, dtype=str)[predicted],
        }

    def report(self, logits: np.ndarray, targets: np.ndarray) -> Evaluation:
        """Metrics and the notes explaining any NaN; `evaluate` returns the metrics alone."""
        probabilities = self.predict(logits)["probabilities"]
        result = classification_metrics(probabilities, targets, self.classes, ordinal=self.config.ordinal)
        self.notes = result.notes
        return result

    def evaluate(self, logits: np.ndarray, targets: np.ndarray, **_: Any) -> dict[str, float]:
        """Metrics of a whole split; training references (used by survival) are accepted and ignored."""
        return self.report(logits, targets).metrics
