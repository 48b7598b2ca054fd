"""The encoder as histo uses it: the contract check, attention, errors, and a real training run.

Everything comes from `histo.testing` (a pytest plugin histo installs): `register_plugin` adds this
package's plugin module to a fresh plugin manager, `check_component` builds the encoder through the
registry exactly as the train stage does and checks shapes, padding invariance and gradients, and
`tiny_cohort` + `run_recipe_text` train it end to end in-process.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from histo.errors import HistoError
from histo.manager import Plugins
from histo.testing import check_component, model_dims, run_recipe_text, synthetic_batch, tiny_cohort

from histo_gated_mil import plugin

SMALL = {"hidden": 16, "attention_dim": 8, "branches": 3, "dropout": 0.0}


@pytest.fixture
def plugins(register_plugin: Callable[..., Plugins]) -> Plugins:
    return register_plugin(plugin, "gated_mil", package="histo-gated-mil")


def test_registers_without_failures(plugins: Plugins) -> None:
    assert plugins.registry("slide_encoders").get("gated_mil").package == "histo-gated-mil"
    assert not plugins.failures


def test_meets_the_slide_encoder_contract(plugins: Plugins) -> None:
    check_component("slide_encoders", "gated_mil", SMALL)


def test_embedding_and_attention_per_magnification(plugins: Plugins) -> None:
    dims = model_dims(feature_dim=12)
    encoder = plugins.registry("slide_encoders").build("gated_mil", SMALL).build(dims).eval()
    batch = synthetic_batch(dims, batch_size=4)
    out = encoder(batch)
    assert out["embedding"].shape == (4, 16 * 3 * 2) and encoder.output_dim == 96
    for mag in dims.magnifications:
        weights, mask = out["attention"][mag], batch["mask"][mag]
        assert weights.shape == mask.shape
        assert torch.all(weights[~mask] == 0)  # no attention on padding
        assert torch.allclose(weights.sum(dim=1), torch.ones(4), atol=1e-5)


def test_an_omics_only_run_is_a_clear_error(plugins: Plugins) -> None:
    builder = plugins.registry("slide_encoders").build("gated_mil", {})
    with pytest.raises(HistoError, match=r"gated_mil.*needs patch features"):
        builder.build(model_dims(magnifications=()))


def test_trains_end_to_end_in_a_recipe(plugins: Plugins, tmp_path: Path) -> None:
    cohort = tiny_cohort(tmp_path / "cohort", patients=12)
    recipe = cohort.train_recipe(
        "{slide_encoder: {name: gated_mil, params: {hidden: 16, attention_dim: 8}}}", omics=False
    )
    summary = run_recipe_text(recipe, tmp_path / "run")
    assert summary["stages"][0]["status"] == "done"
    assert (tmp_path / "run" / "stages" / "train" / "predictions.csv").is_file()


def test_the_shipped_recipe_validates(plugins: Plugins, load_recipe_text: Callable[..., Any]) -> None:
    recipe = (Path(__file__).parents[1] / "recipe.yaml").read_text()
    loaded = load_recipe_text(recipe)
    assert "train" in [stage.id for stage in loaded.stages]
