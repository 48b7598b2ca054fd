"""Per-patient survival functions S(t), needed by the integrated Brier score and survival plots."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def step_survival(survival_per_bin: np.ndarray, inner_edges: np.ndarray, times: np.ndarray) -> np.ndarray:
    """S(t) of a discrete-time model as a step function: 1 in the first bin, S_k after edge k+1.

    `survival_per_bin` [n, K] is S_k = P(T beyond bin k); `inner_edges` [K-1] are the edges between
    bins. A time t in bin j (edge_j <= t < edge_{j+1}) reads S_{j-1} (S_{-1} = 1): the patient's
    survival is known to drop only at the end of a bin. Returns [n, len(times)].
    """
    survival_per_bin = np.asarray(survival_per_bin, dtype=np.float64)
    padded = np.concatenate([np.ones((survival_per_bin.shape[0], 1)), survival_per_bin], axis=1)
    index = np.searchsorted(np.asarray(inner_edges, dtype=np.float64), np.asarray(times), side="right")
    return padded[:, index]


@dataclass(frozen=True)
class BreslowBaseline:
    """Breslow's cumulative baseline hazard of a Cox model, with log-hazards centred by `offset`.

    H0(t) = sum over distinct event times t_k <= t of d_k / sum_{j: t_j >= t_k} exp(eta_j). It is
    stored as H0(t) * exp(offset) so that exp() never overflows for large log-hazards.
    """

    times: np.ndarray  # distinct event times, ascending
    cumulative_hazard: np.ndarray  # H0(times) * exp(offset)
    offset: float

    @classmethod
    def fit(cls, log_hazard: np.ndarray, time: np.ndarray, event: np.ndarray) -> BreslowBaseline:
        eta = np.asarray(log_hazard, dtype=np.float64).reshape(-1)
        time = np.asarray(time, dtype=np.float64)
        event = np.asarray(event).astype(bool)
        if not event.any():
            raise ValueError("Breslow baseline needs at least one event in the training set")
        offset = float(eta.max())
        weight = np.exp(eta - offset)
        order = np.argsort(time)
        time_sorted, weight_sorted = time[order], weight[order]
        at_risk = np.cumsum(weight_sorted[::-1])[::-1]  # sum over j with position >= i
        unique_times, deaths = np.unique(time[event], return_counts=True)
        first = np.searchsorted(time_sorted, unique_times, side="left")  # risk set: t_j >= t_k
        return cls(unique_times, np.cumsum(deaths / at_risk[first]), offset)

    def cumulative_hazard_at(self, times: np.ndarray) -> np.ndarray:
        index = np.searchsorted(self.times, np.asarray(times, dtype=np.float64), side="right")
        return np.concatenate([[0.0], self.cumulative_hazard])[index]

    def survival(self, log_hazard: np.ndarray, times: np.ndarray) -> np.ndarray:
        """S(t | eta) = exp(-H0(t) exp(eta)) for each patient [n] at each time [m] -> [n, m]."""
        eta = np.asarray(log_hazard, dtype=np.float64).reshape(-1, 1)
        with np.errstate(over="ignore"):
            hazard = self.cumulative_hazard_at(times)[None, :] * np.exp(eta - self.offset)
        return np.exp(-hazard)
