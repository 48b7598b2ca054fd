"""The third-party example package examples/histo-hed-tissue, installed as a user would install it.

CI runs `pip install examples/histo-hed-tissue` before the tests; without it these tests skip. They
check discovery through the `histo` entry-point group from the outside (the `histo` command in a
fresh interpreter), the environment switches, and a real recipe that names the plugin's segmenter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pytest
import yaml

from histo.manager import Plugins

PACKAGE = "histo-hed-tissue"
PLUGIN = "hed_tissue"  # the entry-point name: what HISTO_PLUGINS / HISTO_DISABLE_PLUGINS refer to
SEGMENTER = "hed_threshold"
SLIDE = "cmu-1-small-region.svs"

try:
    PACKAGE_VERSION = version(PACKAGE)
except PackageNotFoundError:
    PACKAGE_VERSION = ""

pytestmark = pytest.mark.skipif(
    not PACKAGE_VERSION,
    reason=f"{PACKAGE} is not installed; run `pip install examples/{PACKAGE}` to test the example plugin",
)


def histo(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Any:
    """Run the `histo` command in a fresh interpreter, with the plugin switches unset unless given."""
    environ = {k: v for k, v in os.environ.items() if k not in ("HISTO_PLUGINS", "HISTO_DISABLE_PLUGINS")}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "histo", *args],
        capture_output=True,
        text=True,
        env=environ,
        cwd=cwd,
        check=False,
    )


def listed(env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = histo("plugins", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def test_histo_plugins_lists_the_segmenter_with_its_package_and_version() -> None:
    data = listed()
    rows = [row for row in data["components"] if row["name"] == SEGMENTER]
    assert len(rows) == 1, rows
    row = rows[0]
    assert row["kind"] == "tissue_segmenters"
    assert row["package"] == PACKAGE
    assert row["version"] == PACKAGE_VERSION
    assert row["plugin"] == PLUGIN
    assert row["description"]
    assert not [f for f in data["failures"] if f["package"] == PACKAGE]


def test_disabling_the_plugin_by_its_name_hides_it() -> None:
    data = listed({"HISTO_DISABLE_PLUGINS": f"some_other_plugin,{PLUGIN}"})
    assert SEGMENTER not in {row["name"] for row in data["components"]}
    packages = {row["package"] for row in data["components"]}
    assert PACKAGE not in packages
    assert "histo-mml" in packages  # the default plugins still load


def test_empty_histo_plugins_loads_no_third_party_plugin() -> None:
    data = listed({"HISTO_PLUGINS": ""})
    assert SEGMENTER not in {row["name"] for row in data["components"]}
    assert data["components"], "the default plugins must still load"
    plugins = Plugins(env={"HISTO_PLUGINS": ""})
    assert all(info.default for info in plugins.plugins())


def test_histo_plugins_can_allow_exactly_this_plugin() -> None:
    plugins = Plugins(env={"HISTO_PLUGINS": PLUGIN})
    third_party = [info for info in plugins.plugins() if not info.default]
    assert [(info.name, info.package, info.version) for info in third_party] == [
        (PLUGIN, PACKAGE, PACKAGE_VERSION)
    ]
    assert SEGMENTER in plugins.registry("tissue_segmenters")


def test_schema_offers_the_segmenter_and_its_params_to_editors() -> None:
    from histo.schema import recipe_schema

    schema = recipe_schema(Plugins())
    choices = schema["$defs"].get("TissueSegmenterRef", {}).get("anyOf", [])
    if not choices:
        pytest.skip("no installed stage has a tissue segmenter field yet")
    by_name = {c["properties"]["name"]["const"]: c for c in choices if "properties" in c}
    params = by_name[SEGMENTER]["properties"]["params"]
    assert params["additionalProperties"] is False
    assert {"threshold", "stains", "min_tissue_area_um2"} <= set(params["properties"])
    assert params["properties"]["stains"]["description"]


@pytest.mark.slow
def test_recipe_naming_the_segmenter_tiles_a_real_slide(tmp_path: Path, slides_dir: Path) -> None:
    if "tile" not in Plugins().registry("stages"):
        pytest.skip("the default `tile` stage (plugins/stages/tile.py) is not registered yet")
    h5py = pytest.importorskip("h5py")
    slides = tmp_path / "slides"
    slides.mkdir()
    (slides / SLIDE).symlink_to(slides_dir / SLIDE)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"""\
name: hed-tiling
stages:
  tile:
    stage: tile
    params:
      slides: {slides}
      segmenter: {{name: {SEGMENTER}, params: {{thumbnail_size: 1024, min_tissue_area_um2: 50000}}}}
      magnifications: ["10x"]
      patch_size: 256
""",
        encoding="utf-8",
    )
    proc = histo("validate", str(recipe), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "run"
    proc = histo("run", str(recipe), "--out", str(run_dir), "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    resolved = yaml.safe_load((run_dir / "recipe.yaml").read_text(encoding="utf-8"))
    segmenter = resolved["stages"]["tile"]["params"]["segmenter"]
    assert segmenter["name"] == SEGMENTER
    assert segmenter["params"]["min_tissue_area_um2"] == 50000
    assert segmenter["params"]["threshold"] == "otsu"  # the plugin's defaults are recorded
    provenance = json.loads((run_dir / "provenance.json").read_text(encoding="utf-8"))
    assert provenance["plugin_packages"][PACKAGE] == PACKAGE_VERSION

    stage_dir = run_dir / "stages" / "tile"
    slide_id = Path(SLIDE).stem
    assert [p.name for p in (stage_dir / "coords" / "10x").glob("*.h5")] == [f"{slide_id}.h5"]
    assert slide_id in (stage_dir / "slides.csv").read_text(encoding="utf-8")
    with h5py.File(stage_dir / "coords" / "10x" / f"{slide_id}.h5", "r") as fh:
        coords = fh["coords"][:]
    # 2220 x 2967 level-0 pixels at 0.499 mpp: a 256-pixel patch at 10x spans ~512 level-0 pixels
    width, height, patch0 = 2220, 2967, 512
    grid = -(-width // patch0) * -(-height // patch0)
    assert coords.ndim == 2 and coords.shape[1] == 2
    assert 0 < len(coords) < grid, "the tissue mask must keep some patches and drop the glass"
    assert (coords >= 0).all() and (coords[:, 0] < width).all() and (coords[:, 1] < height).all()
    # the slide's top-left corner is bare glass: no patch may start there
    assert not ((coords[:, 0] < patch0) & (coords[:, 1] < patch0)).any()
