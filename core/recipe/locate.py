"""Maps YAML paths to line numbers, and pydantic error locations to YAML paths."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import Problem

Loc = tuple[str | int, ...]


def yaml_lines(text: str) -> dict[Loc, int]:
    """Line (1-based) of every mapping key and sequence item in a YAML document."""
    lines: dict[Loc, int] = {}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines

    def walk(node: yaml.Node, loc: Loc) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = key_node.value
                lines[(*loc, key)] = key_node.start_mark.line + 1
                walk(value_node, (*loc, key))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines[(*loc, index)] = item.start_mark.line + 1
                walk(item, (*loc, index))

    if root is not None:
        walk(root, ())
    return lines


def dotted(loc: Sequence[str | int]) -> str:
    return ".".join(str(part) for part in loc)


def line_of(lines: dict[Loc, int], loc: Loc) -> int | None:
    """The line of `loc`, or of its nearest ancestor written in the file."""
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _model_at(model: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The pydantic model that owns the last key of `loc`, following nested model fields."""
    current: Any = model
    for part in loc[:-1]:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        current = field.annotation
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def problems_from(
    error: ValidationError, model: type[BaseModel], prefix: Loc, lines: dict[Loc, int]
) -> list[Problem]:
    """One Problem per pydantic error, with the YAML path, its line and a readable message."""
    problems = []
    for err in error.errors():
        loc: Loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        full = (*prefix, *loc)
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            owner = _model_at(model, loc)
            allowed = sorted(owner.model_fields) if owner else []
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1) if loc else []
            message = "unknown key"
            if close:
                message += f"; did you mean {close[0]!r}?"
            elif allowed:
                message += f"; expected one of: {', '.join(allowed)}"
        elif err["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        elif err["type"] == "missing":
            message = "required key is missing"
        elif "input" in err and err["type"] not in ("model_type", "dict_type"):
            message = f"{message} (got {err['input']!r})"
        problems.append(Problem(dotted(full), message, line_of(lines, full)))
    return problems
