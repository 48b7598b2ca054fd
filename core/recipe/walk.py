"""Finds component refs, upstream-stage refs and input paths inside a validated config."""

from __future__ import annotations

import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .locate import Loc
from .refs import ComponentRef, InputPathMarker, StageInputMarker


def _has_marker(annotation: Any, marker: type) -> bool:
    if any(isinstance(m, marker) for m in getattr(annotation, "__metadata__", ())):
        return True
    return any(_has_marker(arg, marker) for arg in typing.get_args(annotation))


def _field_has_marker(field: Any, marker: type) -> bool:
    return any(isinstance(m, marker) for m in field.metadata) or _has_marker(field.annotation, marker)


def _values(value: Any, loc: Loc) -> Iterator[tuple[Loc, Any]]:
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _values(item, (*loc, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _values(item, (*loc, key))
    elif value is not None:
        yield loc, value


def walk(obj: Any, loc: Loc = ()) -> Iterator[tuple[str, Loc, Any]]:
    """Yield ("component", loc, ref), ("stage", loc, id) and ("path", loc, Path) found in `obj`.

    Descends into the validated configs of component refs, so nested components are found too.
    """
    if isinstance(obj, ComponentRef):
        yield "component", loc, obj
        if obj._config is not None:
            yield from walk(obj._config, (*loc, "params"))
    elif isinstance(obj, BaseModel):
        for name, field in type(obj).model_fields.items():
            value = getattr(obj, name)
            if _field_has_marker(field, StageInputMarker):
                for at, item in _values(value, (*loc, name)):
                    yield "stage", at, item
            elif _field_has_marker(field, InputPathMarker):
                for at, item in _values(value, (*loc, name)):
                    if isinstance(item, Path):
                        yield "path", at, item
            else:
                yield from walk(value, (*loc, name))
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from walk(value, (*loc, key))
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            yield from walk(value, (*loc, i))
