"""JSON Schema of recipes built from the live registries, for editors' YAML completion.

Each stage entry becomes a choice over the installed stage plugins (with that plugin's params), and
every component reference inside a config becomes a choice over the components of its kind.
"""

from __future__ import annotations

import copy
from typing import Any

from .manager import Plugins, get_plugins
from .recipe.model import Recipe

KIND_KEY = "x-histo-kind"


def _component_choices(plugins: Plugins, kind: str, defs: dict[str, Any]) -> dict[str, Any]:
    choices = []
    for entry in plugins.registry(kind):
        params = _inline(entry.spec.config.model_json_schema(), plugins, defs)
        choices.append(
            {
                "type": "object",
                "description": entry.spec.description,
                "properties": {"name": {"const": entry.name}, "params": params},
                "required": ["name"],
                "additionalProperties": False,
            }
        )
        choices.append({"const": entry.name, "description": entry.spec.description})
    return {"anyOf": choices} if choices else {"description": f"no {kind} installed"}


def _inline(schema: dict[str, Any], plugins: Plugins, defs: dict[str, Any]) -> dict[str, Any]:
    """Move a model schema's $defs into the shared defs, replacing component refs by choices."""
    schema = copy.deepcopy(schema)
    local = schema.pop("$defs", {})
    for name, sub in local.items():
        kind = sub.get(KIND_KEY)
        if kind is not None:
            defs[name] = _component_choices(plugins, kind, defs)
        else:
            defs.setdefault(name, sub)
    return schema


def recipe_schema(plugins: Plugins | None = None) -> dict[str, Any]:
    plugins = plugins or get_plugins()
    defs: dict[str, Any] = {}
    schema = Recipe.model_json_schema()
    defs.update(schema.pop("$defs", {}))
    stage_choices = []
    for entry in plugins.registry("stages"):
        stage_choices.append(
            {
                "type": "object",
                "description": entry.spec.description,
                "properties": {
                    "stage": {"const": entry.name},
                    "params": _inline(entry.spec.config.model_json_schema(), plugins, defs),
                },
                "required": ["stage"],
                "additionalProperties": False,
            }
        )
    defs["StageEntry"] = {"anyOf": stage_choices} if stage_choices else defs.get("StageEntry", {})
    schema["$defs"] = defs
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "histo recipe"
    return schema
