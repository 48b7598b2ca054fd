"""Tissue segmenters."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from histo import ComponentSpec, hookimpl


@hookimpl
def histo_tissue_segmenters() -> Iterable[ComponentSpec[Any]]:
    return []
