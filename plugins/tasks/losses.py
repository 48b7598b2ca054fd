"""Losses of the prediction tasks, written for numerical safety (log-space, no log(0)) and batching.

Survival targets are float tensors [B, 3]: (bin index, time, event) with event 1 = observed, 0 = censored.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _full_precision(x: Tensor) -> Tensor:
    """Half-precision logits (bf16 autocast) lose the small differences these sums depend on."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def weighted_cross_entropy(logits: Tensor, targets: Tensor, weights: Tensor | None) -> Tensor:
    """Cross-entropy over classes; with `weights`, the weighted mean (sum w_y * nll / sum w_y)."""
    weight = None if weights is None else weights.to(device=logits.device, dtype=logits.dtype)
    return F.cross_entropy(logits, targets.long(), weight=weight)


def discrete_nll_loss(logits: Tensor, targets: Tensor, alpha: float = 0.0) -> Tensor:
    """Negative log-likelihood of a discrete-time hazard model with right censoring.

    hazard h_k = sigmoid(logit_k), survival S_k = prod_{j<=k} (1 - h_j), S_{-1} = 1. A patient whose
    event falls in bin y contributes -log S_{y-1} - log h_y; one censored in bin y survived it:
    -log S_y. Everything is computed in log space (log h = logsigmoid(x), log(1-h) = logsigmoid(-x)),
    so saturated logits never produce log(0). `alpha` re-weights the uncensored term as MCAT does:
    (1 - alpha) * (censored + uncensored) + alpha * uncensored.
    """
    if logits.ndim != 2:
        raise ValueError(f"discrete NLL expects logits [batch, bins], got shape {tuple(logits.shape)}")
    logits = _full_precision(logits)
    bins = targets[:, 0].long().clamp(0, logits.shape[1] - 1).unsqueeze(1)
    event = targets[:, 2].to(logits.dtype)
    log_hazard = F.logsigmoid(logits)
    log_survival = torch.cumsum(F.logsigmoid(-logits), dim=1)
    log_survival_padded = torch.cat([torch.zeros_like(log_survival[:, :1]), log_survival], dim=1)
    survived_before = log_survival_padded.gather(1, bins).squeeze(1)  # log S_{y-1}
    survived_through = log_survival_padded.gather(1, bins + 1).squeeze(1)  # log S_y
    uncensored = -event * (survived_before + log_hazard.gather(1, bins).squeeze(1))
    censored = -(1.0 - event) * survived_through
    loss = (1.0 - alpha) * (censored + uncensored) + alpha * uncensored
    return loss.mean()


def cox_partial_likelihood_loss(log_hazard: Tensor, targets: Tensor) -> Tensor:
    """Negative Cox partial log-likelihood (Breslow ties), averaged over the batch's events.

    -1/d * sum_{i: event} [eta_i - log sum_{j: t_j >= t_i} exp(eta_j)]. Vectorised: sort by time
    descending, logcumsumexp gives the log risk-set sums, and each tied time reads the sum at the last
    member of its tie group so that tied patients share one risk set. A batch without events returns a
    zero that is still connected to the graph (its gradient is zero, never NaN).
    """
    eta = _full_precision(log_hazard).reshape(-1)
    if eta.shape[0] != targets.shape[0]:
        raise ValueError(f"Cox loss: {eta.shape[0]} log-hazards for {targets.shape[0]} targets")
    time = targets[:, 1].to(eta.dtype)
    event = targets[:, 2].to(eta.dtype)
    order = torch.argsort(time, descending=True)
    eta_sorted, time_sorted, event_sorted = eta[order], time[order], event[order]
    log_risk = torch.logcumsumexp(eta_sorted, dim=0)
    ascending = -time_sorted  # ascending, so searchsorted finds the last member of each tie group
    last_of_tie = torch.searchsorted(ascending.contiguous(), ascending.contiguous(), right=True) - 1
    log_risk = log_risk[last_of_tie]
    # No events: the numerator is an exact 0 that keeps the graph; clamping avoids 0/0 without a sync.
    return -((eta_sorted - log_risk) * event_sorted).sum() / event_sorted.sum().clamp(min=1.0)
