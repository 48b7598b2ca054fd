"""The rows of `histo plugins`: every component offered, usable or not, and why not."""

from __future__ import annotations

from typing import Any

from .manager import Plugins
from .registry import Registered


def _row(entry: Registered[Any], problem: str | None) -> dict[str, Any]:
    return {
        "kind": entry.kind,
        "name": entry.name,
        "package": entry.package,
        "version": entry.version,
        "plugin": entry.plugin,
        "description": entry.spec.description,
        "usable": problem is None,
        "problem": problem,
    }


def component_rows(plugins: Plugins) -> list[dict[str, Any]]:
    """One row per component; `usable` is False (with `problem` saying why) for a name two plugins
    claim and for a component refused at registration (e.g. a config whose defaults are invalid)."""
    rows = []
    for registry in plugins.registries().values():
        found = [(entry, registry.problem(entry.name)) for entry in registry]
        found += [(entry, reason) for entry, reason in registry.unavailable.values()]
        rows += [_row(entry, problem) for entry, problem in sorted(found, key=lambda pair: pair[0].name)]
    return rows
