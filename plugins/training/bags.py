"""Patch-feature bags per patient, from histo's extract stage or from CLAM / TRIDENT folders."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from histo.errors import HistoError
from histo.plugins.cohort.table import slide_key


class SlideFeatures:
    """Feature files of every slide, per magnification, read once and kept in memory when asked.

    Slides are matched by id without a slide-file extension (`X.svs` in a cohort table is the bag `X.h5`).
    """

    def __init__(self, files: Mapping[str, Mapping[str, Path]], cache: bool = True) -> None:
        """`files`: magnification -> slide id -> bag file (see histo.plugins.features.find_bags)."""
        self.files = {mag: {slide_key(s): path for s, path in found.items()} for mag, found in files.items()}
        for mag, found in self.files.items():
            if not found:
                raise HistoError(f"no feature files for magnification {mag}")
        self.cache = cache
        self._loaded: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        first_mag = next(iter(self.files))
        first_file = next(iter(self.files[first_mag].values()))
        self.feature_dim = int(self._read(first_file)[0].shape[1])

    @property
    def magnifications(self) -> tuple[str, ...]:
        return tuple(self.files)

    def has_slide(self, slide_id: str) -> bool:
        return all(slide_key(slide_id) in files for files in self.files.values())

    def slides(self) -> set[str]:
        sets = [set(files) for files in self.files.values()]
        return set.intersection(*sets) if sets else set()

    def _read(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        from histo.plugins.features import read_bag

        bag = read_bag(path)
        features = np.asarray(bag.features, dtype=np.float32)
        coords = (
            np.asarray(bag.coords, dtype=np.float32)
            if bag.coords is not None
            else np.zeros((len(features), 2))
        )
        if features.ndim != 2:
            raise HistoError(
                f"{path}: features must be a 2-D array [patches, dim], got shape {features.shape}"
            )
        if not np.isfinite(features).all():
            keep = np.isfinite(features).all(axis=1)
            features, coords = features[keep], coords[keep]
        return features, coords.astype(np.float32)

    def load(self, slide_id: str, mag: str) -> tuple[np.ndarray, np.ndarray]:
        slide_id = slide_key(slide_id)
        key = (slide_id, mag)
        if key in self._loaded:
            return self._loaded[key]
        loaded = self._read(self.files[mag][slide_id])
        if loaded[0].shape[1] != self.feature_dim:
            raise HistoError(
                f"{self.files[mag][slide_id]}: {loaded[0].shape[1]}-d features, but other slides have "
                f"{self.feature_dim}-d; were they made by different extractors?"
            )
        if self.cache:
            self._loaded[key] = loaded
        return loaded

    def patient_bag(self, slide_ids: list[str], mag: str) -> tuple[np.ndarray, np.ndarray]:
        """All patches of a patient's slides at one magnification, concatenated."""
        parts = [self.load(s, mag) for s in slide_ids]
        if not parts:
            return np.zeros((0, self.feature_dim), np.float32), np.zeros((0, 2), np.float32)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
