"""The fusion as histo uses it: the contract check, conditioning on the transcriptome, errors, and a
real training run, all with `histo.testing` (a pytest plugin histo installs)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from histo.errors import HistoError
from histo.manager import Plugins
from histo.testing import check_component, model_dims, run_recipe_text, synthetic_batch, tiny_cohort

from histo_film_fusion import plugin

SMALL = {"hidden": 16, "attention_dim": 8, "output_dim": 16, "dropout": 0.0}


@pytest.fixture
def plugins(register_plugin: Callable[..., Plugins]) -> Plugins:
    return register_plugin(plugin, "film_fusion", package="histo-film-fusion")


def build(plugins: Plugins, omics: str | None = "snn", slide: str | None = None) -> torch.nn.Module:
    dims = model_dims(feature_dim=12)
    fusion = plugins.registry("fusion_strategies").build("film", SMALL)
    omics_builder = plugins.registry("omics_encoders").build(omics, {}) if omics else None
    slide_builder = plugins.registry("slide_encoders").build(slide, {}) if slide else None
    return fusion.build(dims, slide_builder, omics_builder)


def test_registers_without_failures(plugins: Plugins) -> None:
    assert plugins.registry("fusion_strategies").get("film").package == "histo-film-fusion"
    assert not plugins.failures


@pytest.mark.parametrize("slide", [None, "abmil"])
def test_meets_the_fusion_contract(plugins: Plugins, slide: str | None) -> None:
    check_component("fusion_strategies", "film", SMALL, slide_encoder=slide, omics_encoder="snn")


def test_attention_depends_on_the_transcriptome(plugins: Plugins) -> None:
    torch.manual_seed(0)
    model = build(plugins).eval()
    for layer in model.film.values():  # a trained FiLM layer: nonzero scale and shift
        torch.nn.init.normal_(layer.weight, std=0.5)
    batch = synthetic_batch(model_dims(feature_dim=12), batch_size=2)
    attention = model(batch)["attention"]["10x"]
    other = {**batch, "omics": {g: torch.roll(v, 1, dims=0) for g, v in batch["omics"].items()}}
    assert not torch.allclose(model(other)["attention"]["10x"], attention)


def test_without_an_omics_encoder_is_a_clear_error(plugins: Plugins) -> None:
    with pytest.raises(HistoError, match="add `omics_encoder:`"):
        build(plugins, omics=None, slide="abmil")


def test_trains_end_to_end_in_a_recipe(plugins: Plugins, tmp_path: Path) -> None:
    cohort = tiny_cohort(tmp_path / "cohort", patients=12)
    recipe = cohort.train_recipe(
        "{fusion: {name: film, params: {hidden: 16, attention_dim: 8, output_dim: 16}}, "
        "omics_encoder: {name: snn, params: {output_dim: 16, hidden: [16]}}}"
    )
    summary = run_recipe_text(recipe, tmp_path / "run")
    assert summary["stages"][0]["status"] == "done"


def test_the_shipped_recipe_validates(plugins: Plugins, load_recipe_text: Callable[..., Any]) -> None:
    recipe = (Path(__file__).parents[1] / "recipe.yaml").read_text()
    loaded = load_recipe_text(recipe)
    assert "train" in [stage.id for stage in loaded.stages]
