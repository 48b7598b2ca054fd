"""Checks a component's config at registration: defaults that break the config's own constraints.

pydantic does not validate defaults, so `Field(-1, ge=0)` or a default that a validator rejects would
only surface as wrong behaviour in a user's run. histo validates every default once, when a plugin's
hook is collected, and refuses the component with a message naming the field.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined


def default_problems(config: type[BaseModel]) -> list[str]:
    """One message per field whose default the config itself rejects (empty when all are valid)."""
    defaults: dict[str, Any] = {}
    keys: dict[str, str] = {}  # key passed to validation -> field name
    for name, field in config.model_fields.items():
        if field.is_required():
            continue
        if field.default is PydanticUndefined and field.default_factory is None:
            continue
        try:
            value = field.get_default(call_default_factory=True, validated_data={})
        except Exception as exc:  # a default_factory that raises is as broken as a bad default
            return [f"field {name!r}: its default factory raised {type(exc).__name__}: {exc}"]
        if value is None:
            # `x: int = None` is a common way to write "not set", handled by the component's code;
            # refusing it would break plugins that work today
            continue
        key = field.alias if field.alias and not config.model_config.get("populate_by_name") else name
        defaults[key] = value
        keys[key] = name
    try:
        config.model_validate(defaults)
    except ValidationError as exc:
        # model-level errors (no field in `loc`) are left out: a validator such as "give exactly one of
        # a and b" rejects the defaults on purpose, to make the user choose
        problems = []
        for error in exc.errors(include_url=False):
            loc = error.get("loc") or ()
            if error.get("type") == "missing":
                continue  # a required field: no default to check
            if loc and loc[0] in keys:
                where = ".".join(str(part) for part in (keys[str(loc[0])], *loc[1:]))
                value = defaults[str(loc[0])]
                problems.append(f"field {where!r}: default {value!r} is invalid: {error['msg']}")
        return problems
    return []
