"""Recipe values that used to validate and then crash (or write outside runs/) are recipe errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from histo.cli import main
from histo.errors import RecipeError
from histo.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"


def problems(overrides: list[str], recipe: Path = QUICKSTART) -> dict[str, str]:
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe, overrides)
    return {p.path: p.message for p in info.value.problems}


@pytest.mark.parametrize("name", ["../../x", "/tmp/elsewhere", "a/b", "..", ".", "", "a\\b"])
def test_name_must_be_a_plain_file_name(name: str) -> None:
    found = problems([f"name={name!r}" if name else "name=''"])
    assert "plain file name" in found["name"]


def test_plain_name_is_accepted() -> None:
    assert load_recipe(QUICKSTART, ["name=my-run_2"]).name == "my-run_2"


@pytest.mark.parametrize(
    ("override", "path", "words"),
    [
        ("seed=-1", "seed", "greater than or equal to 0"),
        ("seed=4294967296", "seed", "less than or equal to 4294967295"),
        ("stages.teacher.params.splits.seed=-3", "stages.teacher.params.splits.seed", "greater than"),
        ("stages.teacher.params.training.optimizer.lr=.inf", "stages.teacher.params.training.optimizer.lr",
         "finite"),
        ("stages.student.params.training.batch_size=9223372036854775808",
         "stages.student.params.training.batch_size", "less than"),
        ("stages.extract.params.batch_size=.nan", "stages.extract.params.batch_size", "finite"),
    ],
)
def test_out_of_range_values_name_their_yaml_path(override: str, path: str, words: str) -> None:
    found = problems([override])
    assert words in found[path], found


def test_bounds_hold_for_any_plugin_config() -> None:
    """The generic check covers fields without constraints: a third-party float or seed."""
    from pydantic import BaseModel

    from histo.recipe.bounds import out_of_bounds

    class Anything(BaseModel):
        ratio: float = 1.0
        seed: int = 0
        sizes: list[int] = []

    found = dict(out_of_bounds(Anything(ratio=float("-inf"), seed=2**40, sizes=[1, 2**64]), ("p",)))
    assert set(found) == {("p", "ratio"), ("p", "seed"), ("p", "sizes", 1)}


def test_empty_stages_is_a_recipe_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages: {}\n", encoding="utf-8")
    assert main(["validate", str(recipe)]) == 2
    assert "at least one stage" in capsys.readouterr().err


def test_duplicate_keys_are_a_recipe_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("seed: 1\n" + QUICKSTART.read_text() + "seed: 2\n", encoding="utf-8")
    assert main(["validate", str(recipe)]) == 2
    message = capsys.readouterr().err
    assert "'seed' appears twice" in message and "(line " in message


def test_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "base: &b {stage: write_numbers}\nstages:\n  a: {<<: *b, stage: write_numbers}\n", encoding="utf-8"
    )
    with pytest.raises(RecipeError) as info:  # `base` is an unknown key, but no "appears twice"
        load_recipe(recipe)
    assert "twice" not in str(info.value)


def test_non_utf8_recipe_is_a_recipe_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_bytes(b"name: caf\xe9\nstages: {}\n")
    assert main(["validate", str(recipe)]) == 2
    assert "not UTF-8" in capsys.readouterr().err
