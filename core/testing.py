"""pytest plugin shipped with histo, for plugin authors (enabled automatically when histo is installed).

Fixtures:
- `histo_plugins`: a fresh plugin manager with the default plugins and no entry points, installed as
  the process-wide manager for the duration of one test.
- `register_plugin`: `register_plugin(module_or_object, name=None)` adds a plugin to that manager.
- `load_recipe_text`: validate a recipe given as a YAML string against that manager.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .manager import Plugins, get_plugins, set_plugins


@pytest.fixture
def histo_plugins() -> Iterator[Plugins]:
    previous = get_plugins() if _has_global() else None
    fresh = Plugins(load_entry_points=False, env={})
    set_plugins(fresh)
    try:
        yield fresh
    finally:
        set_plugins(previous)


@pytest.fixture
def register_plugin(histo_plugins: Plugins) -> Callable[..., Plugins]:
    def register(plugin: Any, name: str | None = None, package: str = "<test>") -> Plugins:
        histo_plugins.register(plugin, name, package=package)
        return histo_plugins

    return register


@pytest.fixture
def load_recipe_text(histo_plugins: Plugins, tmp_path: Path) -> Callable[..., Any]:
    from .recipe import load_recipe

    def load(text: str, overrides: list[str] | None = None) -> Any:
        path = tmp_path / "recipe.yaml"
        path.write_text(text, encoding="utf-8")
        return load_recipe(path, overrides, plugins=histo_plugins)

    return load


def _has_global() -> bool:
    from . import manager as module

    return module._default is not None
