"""Test kit for plugin authors, and a pytest plugin (enabled automatically when histo is installed).

Fixtures:
- `histo_plugins`: a fresh plugin manager with the default plugins and no entry points, installed as
  the process-wide manager for the duration of one test.
- `register_plugin`: `register_plugin(module_or_object, name=None)` adds a plugin to that manager.
- `load_recipe_text`: validate a recipe given as a YAML string against that manager.
- `histo_dims`, `histo_batch`: default `ModelDims` and a ragged synthetic batch for them.
- `histo_cohort`, `histo_slide`: a tiny cohort of feature bags and a small slide file in `tmp_path`.

Functions (usable without pytest): `model_dims`, `synthetic_batch`, `sample_of`, `tiny_cohort`,
`small_slide`, `check_component` and `run_recipe_text`; see docs/plugins.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .interfaces import ModelDims
from .manager import Plugins, get_plugins, set_plugins
from .testkit.contract import ContractError, check_component
from .testkit.data import (
    TinyCohort,
    model_dims,
    sample_of,
    small_slide,
    synthetic_batch,
    tiny_cohort,
    with_noisy_padding,
)
from .testkit.runs import run_recipe_text

__all__ = [
    "ContractError",
    "TinyCohort",
    "check_component",
    "model_dims",
    "run_recipe_text",
    "sample_of",
    "small_slide",
    "synthetic_batch",
    "tiny_cohort",
    "with_noisy_padding",
]


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


@pytest.fixture
def histo_dims() -> ModelDims:
    """`model_dims()`: 16 features at 10x and 20x, groups tumour (6) and microenvironment (5), 3 outputs."""
    return model_dims()


@pytest.fixture
def histo_batch(histo_dims: ModelDims) -> dict[str, Any]:
    """`synthetic_batch(histo_dims)`: three patients with ragged bags, as the trainer collates them."""
    return synthetic_batch(histo_dims)


@pytest.fixture
def histo_cohort(tmp_path: Path) -> TinyCohort:
    """`tiny_cohort(tmp_path / "cohort")`: feature bags, cohort and expression tables to train on."""
    return tiny_cohort(tmp_path / "cohort")


@pytest.fixture
def histo_slide(tmp_path: Path) -> Path:
    """`small_slide(tmp_path / "slide.tif")`: a small pyramidal TIFF with tissue, at 0.5 microns per pixel."""
    return small_slide(tmp_path / "slide.tif")


def _has_global() -> bool:
    from . import manager as module

    return module._default is not None
