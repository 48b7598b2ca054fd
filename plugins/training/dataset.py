"""One item per patient: patch bags per magnification, expression per gene group, and the target."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from .bags import SlideFeatures


def limit_patches(
    features: np.ndarray, coords: np.ndarray, max_patches: int | None, rng: np.random.Generator | None
) -> tuple[np.ndarray, np.ndarray]:
    """At most `max_patches` rows: drawn at random with `rng` (training), else evenly spaced (evaluation
    is deterministic). Shared by the in-memory and the streamed datasets so both sample alike."""
    n = len(features)
    if max_patches is None or n <= max_patches:
        return features, coords
    if rng is not None:
        keep = np.sort(rng.choice(n, max_patches, replace=False))
    else:
        keep = np.linspace(0, n - 1, max_patches).round().astype(int)
    return features[keep], coords[keep]


class PatientDataset(Dataset[dict[str, Any]]):
    def __init__(
        self,
        patients: Sequence[str],
        targets: np.ndarray,
        *,
        slides: Mapping[str, list[str]] | None = None,
        features: SlideFeatures | None = None,
        omics: Mapping[str, np.ndarray] | None = None,
        max_patches: int | None = None,
        sample: bool = False,
        seed: int = 0,
    ) -> None:
        """`omics` maps group -> [len(patients), genes] already transformed for this fold.

        With `max_patches`, bags larger than it are subsampled: at random each epoch when `sample`
        (training), else evenly spaced (evaluation is deterministic).
        """
        self.patients = list(patients)
        self.targets = targets
        self.slides = slides or {}
        self.features = features
        self.omics = omics or {}
        self.max_patches = max_patches
        self.sample = sample
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.patients)

    def _limit(self, features: np.ndarray, coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return limit_patches(features, coords, self.max_patches, self.rng if self.sample else None)

    def __getitem__(self, index: int) -> dict[str, Any]:
        patient = self.patients[index]
        item: dict[str, Any] = {
            "patient_id": patient,
            "target": self.targets[index],
            "features": {},
            "coords": {},
            "omics": {},
        }
        if self.features is not None:
            for mag in self.features.magnifications:
                feats, coords = self.features.patient_bag(self.slides.get(patient, []), mag)
                item["features"][mag], item["coords"][mag] = self._limit(feats, coords)
        for group, values in self.omics.items():
            item["omics"][group] = values[index]
        return item
