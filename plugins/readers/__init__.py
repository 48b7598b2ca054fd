"""Slide readers: OpenSlide formats and plain images."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from histo import ComponentSpec, hookimpl


@hookimpl
def histo_slide_readers() -> Iterable[ComponentSpec[Any]]:
    return []
