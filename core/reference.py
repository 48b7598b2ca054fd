"""A Markdown reference of every installed component and its parameters, built from the live
registries (`histo schema --markdown`), so the docs cannot drift from the code."""

from __future__ import annotations

from typing import Any

from .kinds import KINDS
from .manager import Plugins, get_plugins
from .recipe.model import Recipe


def _type(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        kind = defs.get(name, {}).get("x-histo-kind")
        return f"{kind} component" if kind else name
    if "anyOf" in schema:
        return " or ".join(_type(s, defs) for s in schema["anyOf"])
    if "enum" in schema:
        return " / ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list of {_type(schema.get('items', {}), defs)}"
    if (
        kind == "object"
        and "additionalProperties" in schema
        and isinstance(schema["additionalProperties"], dict)
    ):
        return f"mapping to {_type(schema['additionalProperties'], defs)}"
    return str(kind)


def _default(field: dict[str, Any], required: bool) -> str:
    if required:
        return "**required**"
    if "default" not in field:
        return "computed"  # a default_factory: JSON Schema has no value to show
    value = field["default"]
    return "`null`" if value is None else f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _params_table(schema: dict[str, Any], prefix: str = "", defs: dict[str, Any] | None = None) -> list[str]:
    defs = defs if defs is not None else schema.get("$defs", {})
    rows = []
    required = set(schema.get("required", []))
    for name, field in schema.get("properties", {}).items():
        target = defs.get(field.get("$ref", "").rsplit("/", 1)[-1], {}) if "$ref" in field else {}
        if target.get("properties") and not target.get("x-histo-kind"):
            rows += _params_table(target, f"{prefix}{name}.", defs)
            continue
        description = field.get("description") or target.get("description", "")
        cells = [f"`{prefix}{name}`", _type(field, defs), _default(field, name in required), description]
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return rows


def markdown_reference(plugins: Plugins | None = None) -> str:
    plugins = plugins or get_plugins()
    lines = [
        "# Recipe reference",
        "",
        "Generated from the installed plugins by `histo schema --markdown`; do not edit by hand.",
        "A component parameter is written `{name: <component>, params: {...}}` or just `<component>`.",
        "",
        "## Recipe",
        "",
        "| key | type | default | description |",
        "|---|---|---|---|",
        *_params_table(Recipe.model_json_schema()),
    ]
    for kind in KINDS:
        entries = list(plugins.registry(kind.name))
        if not entries:
            continue
        lines += ["", f"## {kind.name}", "", f"{kind.summary[0].upper()}{kind.summary[1:]}.", ""]
        for entry in entries:
            lines += [f"### `{entry.name}`", "", f"{entry.spec.description} ({entry.package})", ""]
            rows = _params_table(entry.spec.config.model_json_schema())
            lines += (
                ["| parameter | type | default | description |", "|---|---|---|---|", *rows]
                if rows
                else ["No parameters."]
            )
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"
