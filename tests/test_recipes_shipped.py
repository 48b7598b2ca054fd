"""The shipped recipes validate, and the generated recipe reference is current."""

from __future__ import annotations

from pathlib import Path

import pytest

from histo.manager import Plugins
from histo.recipe import load_recipe
from histo.reference import markdown_reference

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.name for p in RECIPES])
def test_shipped_recipes_validate(recipe: Path, histo_plugins: Plugins) -> None:
    loaded = load_recipe(recipe, plugins=histo_plugins)
    assert loaded.stages


def test_recipe_reference_is_generated_from_the_live_registries(histo_plugins: Plugins) -> None:
    committed = (ROOT / "docs" / "recipe-reference.md").read_text()
    assert committed == markdown_reference(histo_plugins), (
        "docs/recipe-reference.md is stale: regenerate it with "
        "`HISTO_PLUGINS= histo schema --markdown -o docs/recipe-reference.md`"
    )
