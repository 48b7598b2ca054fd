"""Survival task: discrete-time NLL or Cox head, bins and censoring reference fitted on training data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit, log_expit
from torch import Tensor

from histo.errors import HistoError

from .configs import SurvivalConfig
from .labels import require_columns, require_usable
from .losses import cox_partial_likelihood_loss, discrete_nll_loss
from .metrics import Evaluation, harrell_c_index, survival_metrics
from .survival_curves import BreslowBaseline, step_survival

TASK = "survival"


class SurvivalTask:
    """Right-censored time-to-event prediction.

    Targets from `encode` are float [n, 3]: (bin index, time, event). The 'nll' head has one hazard
    logit per bin; 'cox' has one log-hazard. Higher `risk` from `predict` means an earlier event.
    """

    def __init__(self, config: SurvivalConfig) -> None:
        self.config = config
        self.num_outputs = config.bins if config.loss == "nll" else 1
        self.bin_edges: np.ndarray | None = None  # [bins + 1], 0 ... +inf ('nll' only)
        self.train_time: np.ndarray | None = None  # the training part's follow-up, kept for IPCW/Breslow
        self.train_event: np.ndarray | None = None
        self.fit_notes: list[str] = []
        self.notes: list[str] = []

    # -- labels ----------------------------------------------------------------------------------
    def usable(self, labels: pd.DataFrame) -> pd.Series:
        time_col, event_col = self.config.time_column, self.config.event_column
        require_columns(labels, [time_col], TASK, "time_column")
        require_columns(labels, [event_col], TASK, "event_column")
        time = pd.to_numeric(labels[time_col], errors="coerce").astype(float)
        event = pd.to_numeric(labels[event_col].map(_bool_as_number), errors="coerce")
        bad_time = ~(np.isfinite(time) & (time > 0))
        bad_event = ~event.isin([0, 1])
        reasons = []
        flags = zip(bad_time.to_numpy(), bad_event.to_numpy(), strict=True)
        rows = zip(flags, labels[time_col], labels[event_col], strict=True)
        for (time_bad, event_bad), time_value, event_value in rows:
            why = []
            if time_bad:
                why.append(f"{time_col!r} is {time_value!r}, expected a number > 0")
            if event_bad:
                why.append(f"{event_col!r} is {event_value!r}, expected 1 (event) or 0 (censored)")
            reasons.append("; ".join(why))
        return pd.Series(reasons, index=labels.index, dtype=object, name="reason")

    def _arrays(self, labels: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        require_usable(self.usable(labels), TASK)
        time = pd.to_numeric(labels[self.config.time_column]).to_numpy(dtype=np.float64)
        event = pd.to_numeric(labels[self.config.event_column].map(_bool_as_number))
        return time, event.to_numpy(dtype=np.float64)

    def fit(self, train_labels: pd.DataFrame) -> None:
        """Bin edges from the observed (uncensored) training times; the training follow-up for IPCW."""
        usable = self.usable(train_labels)
        time, event = self._arrays(train_labels[usable == ""])
        observed = time[event == 1]
        if observed.size == 0:
            raise HistoError(
                f"{TASK} task: the training part has {time.size} patient(s) and no observed event "
                f"({self.config.event_column} = 1); survival cannot be learnt. "
                "Check the event column or the folds."
            )
        self.train_time, self.train_event = time, event
        self.fit_notes = []
        if self.config.loss == "nll":
            inner = np.quantile(observed, np.linspace(0.0, 1.0, self.config.bins + 1)[1:-1])
            if np.unique(inner).size < inner.size:
                self.fit_notes.append(
                    f"only {observed.size} distinct observed training times for {self.config.bins} bins: "
                    "some bins are empty"
                )
            self.bin_edges = np.concatenate([[0.0], inner, [np.inf]])

    @property
    def inner_edges(self) -> np.ndarray:
        if self.bin_edges is None:
            raise RuntimeError("survival task: call fit(train_labels) first (bin edges are fitted per fold)")
        return self.bin_edges[1:-1]

    def encode(self, labels: pd.DataFrame) -> np.ndarray:
        time, event = self._arrays(labels)
        if self.config.loss == "nll":
            bins = np.searchsorted(self.inner_edges, time, side="right").astype(np.float64)
        else:
            bins = np.zeros_like(time)
        return np.stack([bins, time, event], axis=1)

    # -- training --------------------------------------------------------------------------------
    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        if self.config.loss == "cox":
            return cox_partial_likelihood_loss(logits, targets)
        return discrete_nll_loss(logits, targets, alpha=self.config.alpha)

    # -- outputs ---------------------------------------------------------------------------------
    def predict(self, logits: np.ndarray) -> dict[str, np.ndarray]:
        """'nll': hazards, survival per bin S_k and risk = -sum_k S_k; 'cox': risk = the log-hazard."""
        logits = np.asarray(logits, dtype=np.float64)
        if self.config.loss == "cox":
            return {"risk": logits.reshape(-1)}
        survival = np.exp(np.cumsum(log_expit(-logits), axis=1))
        return {"hazards": expit(logits), "survival": survival, "risk": -survival.sum(axis=1)}

    def report(
        self,
        logits: np.ndarray,
        targets: np.ndarray,
        *,
        train_logits: np.ndarray | None = None,
        train_targets: np.ndarray | None = None,
    ) -> Evaluation:
        """Metrics and notes. The training reference (targets from `encode`, else those kept at `fit`)
        weights the IPCW metrics; `train_logits` (aligned with it) give the Cox Breslow baseline."""
        targets = np.asarray(targets, dtype=np.float64)
        outputs = self.predict(logits)
        train_time: np.ndarray | None = self.train_time
        train_event: np.ndarray | None = self.train_event
        if train_targets is not None:
            train_time, train_event = train_targets[:, 1], train_targets[:, 2]
        survival_fn, why = self._survival_fn(outputs, train_logits, train_time, train_event)
        result = survival_metrics(
            outputs["risk"], targets[:, 1], targets[:, 2],
            train_time=train_time, train_event=train_event,
            eval_quantiles=self.config.eval_times, ibs_range=self.config.ibs_range,
            survival_fn=survival_fn, survival_note=why,
        )  # fmt: skip
        self.notes = result.notes
        return result

    def evaluate(self, logits: np.ndarray, targets: np.ndarray, **reference: Any) -> dict[str, float]:
        return self.report(logits, targets, **reference).metrics

    def selection_metrics(self, logits: np.ndarray, targets: np.ndarray, metric: str) -> dict[str, float]:
        """What selecting epochs on `metric` needs, every epoch: Harrell's C-index alone when that (or the
        loss, computed by the engine) selects, since the IPCW metrics, td-AUC and IBS cost far more per
        call and only the chosen epoch's test metrics are reported; all of them otherwise."""
        if metric not in ("c_index", "loss"):
            return self.evaluate(logits, targets)
        targets = np.asarray(targets, dtype=np.float64)
        risk = self.predict(logits)["risk"]
        return {"c_index": harrell_c_index(risk, targets[:, 1], targets[:, 2])}

    def _survival_fn(
        self,
        outputs: dict[str, np.ndarray],
        train_logits: np.ndarray | None,
        train_time: np.ndarray | None,
        train_event: np.ndarray | None,
    ) -> tuple[Any, str]:
        if self.config.loss == "nll":
            inner = self.inner_edges
            return (lambda times: step_survival(outputs["survival"], inner, times)), ""
        if train_logits is None or train_time is None or train_event is None:
            return None, "Cox IBS needs the training set's log-hazards (train_logits) for a Breslow baseline"
        train_risk = np.asarray(train_logits, dtype=np.float64).reshape(-1)
        if train_risk.shape[0] != train_time.shape[0]:
            raise ValueError(
                f"train_logits has {train_risk.shape[0]} rows but the training reference has "
                f"{train_time.shape[0]}; pass train_targets encoded from the same patients"
            )
        baseline = BreslowBaseline.fit(train_risk, train_time, train_event)
        return (lambda times: baseline.survival(outputs["risk"], times)), ""


def _bool_as_number(value: Any) -> Any:
    return int(value) if isinstance(value, bool | np.bool_) else value
