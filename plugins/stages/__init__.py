"""Default stages. Each stage lives in its own module; this module only registers them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from histo import ComponentSpec, hookimpl

from .classical import SPEC as CLASSICAL
from .compare import SPEC as COMPARE
from .extract import SPEC as EXTRACT
from .heatmaps import SPEC as HEATMAPS
from .predict import SPEC as PREDICT
from .report import SPEC as REPORT
from .synthesize import SPEC as SYNTHESIZE
from .tcga_cohort import SPEC as TCGA_COHORT
from .tile import SPEC as TILE
from .train import SPEC as TRAIN


@hookimpl
def histo_stages() -> Iterable[ComponentSpec[Any]]:
    return [SYNTHESIZE, TCGA_COHORT, TILE, EXTRACT, TRAIN, CLASSICAL, COMPARE, PREDICT, HEATMAPS, REPORT]
