"""Value bounds every config gets for free: finite floats, ints that fit 64 bits, 32-bit seeds.

A config field that validates but holds `.inf` or 2**63 only fails later, after earlier stages ran
for minutes; checking every validated config here catches it before anything runs, for third-party
plugins too, without each config repeating the same constraints.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import BaseModel, Field

from .locate import Loc
from .refs import ComponentRef

SEED_MAX = 2**32 - 1  # numpy's SeedSequence and torch.manual_seed accept 0 .. 2**32-1 everywhere
INT64_MAX = 2**63 - 1

Seed = Annotated[int, Field(ge=0, le=SEED_MAX, description="seed of random choices, 0 .. 2**32-1")]


def out_of_bounds(obj: Any, loc: Loc = ()) -> Iterator[tuple[Loc, str]]:
    """(YAML path, message) for each non-finite float, int beyond int64 or seed outside 0..2**32-1."""
    if isinstance(obj, ComponentRef):
        if obj._config is not None:
            yield from out_of_bounds(obj._config, (*loc, "params"))
    elif isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            value = getattr(obj, name)
            is_int = isinstance(value, int) and not isinstance(value, bool)
            if name == "seed" and is_int and not 0 <= value <= SEED_MAX:
                yield (*loc, name), f"a seed is an integer from 0 to {SEED_MAX} (got {value})"
                continue
            yield from out_of_bounds(value, (*loc, name))
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from out_of_bounds(value, (*loc, key))
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            yield from out_of_bounds(value, (*loc, i))
    elif isinstance(obj, float) and not math.isfinite(obj):
        yield loc, f"must be a finite number (got {obj})"
    elif isinstance(obj, int) and not isinstance(obj, bool) and abs(obj) > INT64_MAX:
        yield loc, f"must fit in a 64-bit integer (got {obj})"
