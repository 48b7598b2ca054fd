"""Default stages. Each stage lives in its own module; this module only registers them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from histo import ComponentSpec, hookimpl


@hookimpl
def histo_stages() -> Iterable[ComponentSpec[Any]]:
    return []
