"""Tissue detection: a boolean mask at low resolution, with its scale to level 0."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from .slides import Slide


@dataclass(frozen=True)
class TissueMask:
    mask: np.ndarray  # bool [height, width]
    downsample: float  # level-0 pixels per mask pixel

    @property
    def tissue_fraction(self) -> float:
        return float(self.mask.mean()) if self.mask.size else 0.0


class TissueSegmenter(ABC):
    @abstractmethod
    def segment(self, slide: Slide) -> TissueMask:
        """Find tissue. Area thresholds are in square microns so settings carry across scanners."""
