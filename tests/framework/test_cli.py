from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import toy_plugin

from histo.cli import main
from histo.kinds import KIND_NAMES


@pytest.fixture
def toy(register_plugin: Any) -> Any:
    return register_plugin(toy_plugin, "toy", package="histo-toy")


def test_plugins_json_lists_kind_name_package(toy: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = {(c["kind"], c["name"]): c for c in data["components"]}
    assert rows[("stages", "write_numbers")]["package"] == "histo-toy"
    assert rows[("token_aggregators", "toy_topk")]["description"] == "keep the k largest values"
    assert set(c["kind"] for c in data["components"]) <= set(KIND_NAMES)


def test_schema_offers_installed_stages_and_components(toy: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    stages = schema["$defs"]["StageEntry"]["anyOf"]
    by_name = {s["properties"]["stage"]["const"]: s for s in stages}
    assert {"write_numbers", "sum_numbers"} <= set(by_name)
    params = by_name["write_numbers"]["properties"]["params"]
    assert params["properties"]["count"]["type"] == "integer"
    assert params["additionalProperties"] is False
    choices = schema["$defs"]["TokenAggregatorRef"]["anyOf"]
    assert {"const": "toy_topk", "description": "keep the k largest values"} in choices


def test_schema_validates_a_recipe(toy: Any, capsys: pytest.CaptureFixture[str]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    main(["schema"])
    schema = json.loads(capsys.readouterr().out)
    good = {"stages": {"w": {"stage": "write_numbers", "params": {"count": 2}}}}
    jsonschema.validate(good, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"stages": {"w": {"stage": "write_numbers", "params": {"cont": 2}}}}, schema)


def test_console_script_runs_without_traceback_on_user_error(tmp_path: Any) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages:\n  a:\n    stage: no_such_stage\n")
    proc = subprocess.run(
        [sys.executable, "-m", "histo", "validate", str(recipe)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert "stages.a.stage (line 3): unknown stages 'no_such_stage'" in proc.stderr
    assert "Traceback" not in proc.stderr
    usage = subprocess.run([sys.executable, "-m", "histo", "frobnicate"], capture_output=True, text=True)
    assert usage.returncode == 2
