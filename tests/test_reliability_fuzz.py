"""Property-based fuzzing of the shipped recipes: a mutated recipe never crashes histo (no traceback,
no exit 3); it validates, or fails with a recipe error naming a YAML key; one that validates passes
the input preflight or names its problems, and (a few, on tiny settings) runs or fails cleanly."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from histo.cli import main
from histo.errors import HistoError, RecipeError
from histo.recipe import load_recipe
from histo.run.preflight import preflight

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))
TEXTS = {path.name: path.read_text(encoding="utf-8") for path in RECIPES}

NASTY: list[Any] = [
    None, True, False, 0, -1, 1, 3, 2**31, 2**63, 2**64, -(2**70), 0.5, -0.5, 1e-300,
    math.inf, -math.inf, math.nan, "", " ", "nan", "x", "../../x", "/abs/path", "a\x00b", "10x", "é",
    [], [[]], [1, "a"], ["x", "x"], {}, {"a": 1}, {"name": "nope"},
]  # fmt: skip
values = st.one_of(
    st.sampled_from(NASTY),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)


def plain(text: str) -> Any:
    """The recipe as plain data, with YAML aliases unshared so one mutation changes one place."""
    return json.loads(json.dumps(yaml.safe_load(text)))


def paths(node: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [at] if at else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*at, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += paths(value, (*at, i))
    return found


@st.composite
def mutations(draw: st.DrawFn, names: list[str] | None = None) -> tuple[str, Any, tuple[Any, ...], str]:
    """(recipe name, mutated data, mutated path, kind of mutation)."""
    name = draw(st.sampled_from(names or sorted(TEXTS)))
    data = plain(TEXTS[name])
    where = draw(st.sampled_from(paths(data)))
    parent = data
    for part in where[:-1]:
        parent = parent[part]
    last = where[-1]
    kind = draw(st.sampled_from(["value", "value", "delete", "rename"]))
    if kind == "value" or isinstance(parent, list):
        parent[last] = draw(values)
        kind = "value"
    elif kind == "delete":
        del parent[last]
    else:
        parent[str(last) + draw(st.sampled_from(["x", "_", "s"]))] = parent.pop(last)
    return name, data, where, kind


def write(data: Any) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="histo-fuzz-"))
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def dotted(where: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in where)


@settings(
    max_examples=80,
    deadline=None,
    derandomize=True,  # the same examples on every CI run: a failure is reproducible, never flaky
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(mutations())
def test_mutated_recipes_validate_or_name_the_key(mutation: tuple[str, Any, tuple[Any, ...], str]) -> None:
    _, data, where, kind = mutation
    try:
        loaded = load_recipe(write(data))
    except RecipeError as exc:
        assert exc.exit_code == 2 and exc.problems
        assert all(p.path or p.message for p in exc.problems)
        if kind == "value":  # the error is at the changed key, one of its parents, or inside it
            key = dotted(where)
            related = [p for p in exc.problems if key.startswith(p.path) or p.path.startswith(key)]
            assert related or any(p.path.startswith("stages.") for p in exc.problems), (key, exc.problems)
        return
    except HistoError as exc:
        assert exc.exit_code in (1, 2), exc
        return
    for problem in preflight(loaded):  # never raises: problems are data
        assert problem.path.startswith("stages.") and problem.message


@pytest.fixture(scope="module")
def tile_recipe(slides_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("fuzz-slides")
    (folder / "a.svs").symlink_to(slides_dir / "cmu-1-small-region.svs")
    (folder / "b.svs").symlink_to(slides_dir / "openslide-fixtures" / "small.svs")
    return yaml.safe_dump(
        {
            "name": "fuzz",
            "seed": 1,
            "stages": {
                "tile": {
                    "stage": "tile",
                    "params": {
                        "slides": str(folder),
                        "magnifications": ["5x"],
                        "patch_size": 128,
                        "min_tissue": 0.5,
                        "qc_thumbnails": False,
                    },
                }
            },
        }
    )


def test_mutated_runs_finish_or_fail_with_a_user_error(tile_recipe: str, tmp_path: Path) -> None:
    """A few real runs (tiny settings): exit 0, 1 or 2, never 3."""
    TEXTS["fuzz-tile"] = tile_recipe
    outcomes: list[int] = []

    @settings(max_examples=5, deadline=None, derandomize=True, database=None)
    @given(mutations(["fuzz-tile"]))
    def run_one(mutation: tuple[str, Any, tuple[Any, ...], str]) -> None:
        _, data, _, _ = mutation
        recipe = write(data)
        code = main(["run", str(recipe), "--out", str(recipe.parent / "run"), "--quiet"])
        assert code in (0, 1, 2), code
        outcomes.append(code)

    try:
        run_one()
    finally:
        TEXTS.pop("fuzz-tile")
    assert outcomes
