from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import toy_plugin

from histo.cli import main
from histo.errors import RecipeError

VALID = """\
name: numbers
seed: 7
stages:
  write:
    stage: write_numbers
    params:
      count: 4
  total:
    stage: sum_numbers
    params:
      numbers: write
      keep: {name: toy_topk, params: {k: 3}}
"""


@pytest.fixture
def toy(register_plugin: Any) -> Any:
    return register_plugin(toy_plugin, "toy")


def problems(exc: RecipeError) -> dict[str, str]:
    return {p.path: p.message for p in exc.problems}


def test_valid_recipe_resolves_defaults(toy: Any, load_recipe_text: Any) -> None:
    loaded = load_recipe_text(VALID)
    assert [s.id for s in loaded.stages] == ["write", "total"]
    resolved = loaded.resolved()
    assert resolved["stages"]["write"]["params"] == {
        "count": 4,
        "source": None,
        "fail": False,
        "skip_every": 0,
    }
    assert resolved["stages"]["total"]["params"]["keep"] == {"name": "toy_topk", "params": {"k": 3}}
    assert loaded.stages[1].upstream == ["write"]


def test_bare_component_name_is_accepted(toy: Any, load_recipe_text: Any) -> None:
    loaded = load_recipe_text(VALID.replace("keep: {name: toy_topk, params: {k: 3}}", "keep: toy_topk"))
    assert loaded.resolved()["stages"]["total"]["params"]["keep"]["params"] == {"k": 2}


def test_every_problem_is_reported_with_path_and_line(toy: Any, load_recipe_text: Any) -> None:
    broken = """\
name: numbers
stages:
  write:
    stage: write_numbrs
  total:
    stage: sum_numbers
    params:
      numbers: write
      keep: {name: toy_topq, params: {}}
  again:
    stage: write_numbers
    params:
      count: lots
      colour: red
"""
    with pytest.raises(RecipeError) as info:
        load_recipe_text(broken)
    found = {p.path: p for p in info.value.problems}
    assert "did you mean 'write_numbers'" in found["stages.write.stage"].message
    assert found["stages.write.stage"].line == 4
    assert "did you mean 'toy_topk'" in found["stages.total.params.keep.name"].message
    assert found["stages.again.params.count"].line == 13
    assert "integer" in found["stages.again.params.count"].message
    assert found["stages.again.params.colour"].message.startswith("unknown key")
    assert found["stages.again.params.colour"].line == 14
    assert len(info.value.problems) == 4


def test_component_params_are_validated(toy: Any, load_recipe_text: Any) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe_text(VALID.replace("{k: 3}", "{k: 0, kk: 1}"))
    found = problems(info.value)
    assert "greater than or equal to 1" in found["stages.total.params.keep.params.k"]
    assert "did you mean 'k'" in found["stages.total.params.keep.params.kk"]


def test_stage_reference_must_be_earlier(toy: Any, load_recipe_text: Any) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe_text(VALID.replace("numbers: write", "numbers: total"))
    assert "no earlier stage 'total'" in problems(info.value)["stages.total.params.numbers"]


def test_top_level_unknown_key_and_missing_stages(toy: Any, load_recipe_text: Any) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe_text("name: x\nsead: 3\n")
    found = problems(info.value)
    assert "did you mean 'seed'" in found["sead"]
    assert found["stages"] == "required key is missing"


def test_overrides_apply_with_yaml_types(toy: Any, load_recipe_text: Any) -> None:
    loaded = load_recipe_text(
        VALID, ["stages.write.params.count=9", "seed=11", "stages.total.params.keep.params.k=1"]
    )
    resolved = loaded.resolved()
    assert resolved["seed"] == 11
    assert resolved["stages"]["write"]["params"]["count"] == 9
    assert resolved["stages"]["total"]["params"]["keep"]["params"]["k"] == 1


def test_override_errors_are_reported(toy: Any, load_recipe_text: Any) -> None:
    with pytest.raises(RecipeError, match=r"expected KEY\.PATH=VALUE"):
        load_recipe_text(VALID, ["stages.write.params.count"])
    with pytest.raises(RecipeError) as info:
        load_recipe_text(VALID, ["stages.write.params.count=many"])
    assert "stages.write.params.count" in problems(info.value)


def test_yaml_syntax_error_names_line(toy: Any, load_recipe_text: Any) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe_text("stages:\n  write: {stage: [\n")
    assert info.value.problems[0].line is not None
    assert "not valid YAML" in info.value.problems[0].message


def test_recipes_cannot_execute_code(toy: Any, load_recipe_text: Any) -> None:
    with pytest.raises(RecipeError):
        load_recipe_text("!!python/object/apply:os.system ['echo hacked']\n")


def test_validate_command_exit_codes(toy: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(VALID)
    assert main(["validate", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(VALID.replace("count: 4", "count: four\n      counts: 3").replace("toy_topk", "top_k"))
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "stages.write.params.count (line 7)" in err
    assert "stages.write.params.counts (line 8): unknown key; did you mean 'count'?" in err
    assert "stages.total.params.keep.name" in err and "did you mean 'toy_topk'" in err
    assert main(["validate", str(tmp_path / "missing.yaml")]) == 2
