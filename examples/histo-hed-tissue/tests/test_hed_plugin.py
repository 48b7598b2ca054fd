"""The plugin as histo sees it, using the pytest fixtures histo ships (histo.testing).

`register_plugin` adds this package's plugin module to a fresh plugin manager (the default plugins,
no entry points), and `load_recipe_text` validates a recipe against that manager, as `histo validate`
would after `pip install`.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from histo import ComponentSpec, hookimpl
from histo.errors import RecipeError
from histo.interfaces import Stage, StageContext, TissueSegmenter
from histo.manager import Plugins
from histo.recipe.refs import TissueSegmenterRef
from pydantic import BaseModel, ConfigDict

from histo_hed_tissue import plugin
from histo_hed_tissue.config import HedThresholdConfig


class ProbeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    segmenter: TissueSegmenterRef


class Probe(Stage[ProbeConfig]):
    """A stand-in stage with a `segmenter` field, like histo's tiling stage, for recipe validation."""

    def run(self, ctx: StageContext) -> None:
        raise AssertionError("validation only")


class ProbePlugin:
    @hookimpl
    def histo_stages(self) -> Iterable[ComponentSpec[Any]]:
        return [ComponentSpec("probe", Probe, ProbeConfig, "test stage with a segmenter")]


@pytest.fixture
def plugins(register_plugin: Callable[..., Plugins]) -> Plugins:
    register_plugin(ProbePlugin(), "probe")
    return register_plugin(plugin, "hed_tissue", package="histo-hed-tissue")


def test_registers_one_tissue_segmenter(plugins: Plugins) -> None:
    entry = plugins.registry("tissue_segmenters").get("hed_threshold")
    assert entry.package == "histo-hed-tissue"
    assert entry.plugin == "hed_tissue"
    assert entry.spec.config is HedThresholdConfig
    assert isinstance(entry.spec.build({}), TissueSegmenter)
    assert not plugins.failures


def test_recipe_naming_the_segmenter_validates_with_defaults_filled(
    plugins: Plugins, load_recipe_text: Callable[..., Any]
) -> None:
    loaded = load_recipe_text(
        """
stages:
  mask:
    stage: probe
    params:
      segmenter: {name: hed_threshold, params: {threshold: 0.15, stains: [haematoxylin, eosin, dab]}}
"""
    )
    ref = loaded.stages[0].config.segmenter
    assert isinstance(ref.config, HedThresholdConfig)
    assert ref.config.threshold == 0.15
    assert ref.config.stains == ["haematoxylin", "eosin", "dab"]
    resolved = loaded.resolved()["stages"]["mask"]["params"]["segmenter"]["params"]
    assert resolved["min_tissue_area_um2"] == 20000  # the defaults are recorded in the run's recipe
    assert isinstance(ref.build(), TissueSegmenter)


def test_bare_name_uses_the_defaults(plugins: Plugins, load_recipe_text: Callable[..., Any]) -> None:
    loaded = load_recipe_text("stages:\n  mask: {stage: probe, params: {segmenter: hed_threshold}}\n")
    assert loaded.stages[0].config.segmenter.config == HedThresholdConfig()


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ("{thresold: 0.2}", r"segmenter\.params\.thresold.*unknown key"),
        ("{threshold: otsu_please}", r"segmenter\.params\.threshold \(line 5\): .*expected .otsu. or"),
        ("{threshold: -1}", r"segmenter\.params\.threshold"),
        ("{stains: [dapi]}", r"segmenter\.params\.stains\.0"),
        ("{stains: []}", r"segmenter\.params\.stains"),
        ("{min_tissue_area_um2: -5}", r"segmenter\.params\.min_tissue_area_um2"),
    ],
)
def test_bad_params_name_their_yaml_path(
    plugins: Plugins, load_recipe_text: Callable[..., Any], params: str, expected: str
) -> None:
    segmenter = f"{{name: hed_threshold, params: {params}}}"
    text = f"stages:\n  mask:\n    stage: probe\n    params:\n      segmenter: {segmenter}\n"
    with pytest.raises(RecipeError, match=expected):
        load_recipe_text(text)


def test_misspelt_name_suggests_the_segmenter(plugins: Plugins, load_recipe_text: Callable[..., Any]) -> None:
    with pytest.raises(RecipeError, match=r"did you mean 'hed_threshold'"):
        load_recipe_text("stages:\n  mask: {stage: probe, params: {segmenter: hed_treshold}}\n")


def test_listing_the_plugin_does_not_import_numerical_code() -> None:
    # a fresh interpreter: the segmenter (numpy + scipy) loads when a recipe builds it, not when
    # histo imports the plugin and calls its hook to list components
    code = (
        "import sys; from histo_hed_tissue import plugin; plugin.histo_tissue_segmenters(); "
        "print(sorted(m for m in ('scipy', 'histo_hed_tissue.segmenter') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
