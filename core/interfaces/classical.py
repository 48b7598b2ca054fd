"""The contract of classical models: scikit-learn / scikit-survival style estimators that a stage fits on
a patients x features matrix, on the same folds, preprocessing and exclusions as the deep models.

The stage owns the folds and the inner cross-validation splits (so every classical model of a run is
selected on the same inner folds, and none of them can see a test patient); a model owns its
hyperparameter grid and how it searches it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

# (rows to fit on, rows to score on): indices into the training matrix given to `fit`
InnerSplit = tuple["np.ndarray", "np.ndarray"]


@runtime_checkable
class ClassicalModel(Protocol):
    """A model fitted on one fold's training rows, its hyperparameters chosen on `inner` splits only.

    `tasks` names the task kinds it supports ("classification", "survival"). Targets `y` are class
    indices [n] (classification, `num_outputs` classes) or float [n, 2] of (time, event) (survival).
    """

    tasks: tuple[str, ...]

    def fit(
        self, x: np.ndarray, y: np.ndarray, inner: Sequence[InnerSplit], *, num_outputs: int, seed: int
    ) -> dict[str, Any]:
        """Choose hyperparameters by scoring on the inner splits, refit on all rows; return what was
        chosen and the inner-CV scores (written to the fold's model.json)."""
        ...

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities [n, num_outputs] (classification) or risk [n], higher = earlier event."""
        ...

    def survival_function(self, x: np.ndarray, times: np.ndarray) -> np.ndarray | None:
        """S(t) [n, len(times)] (survival models), or None: the stage then uses a Breslow baseline."""
        ...
