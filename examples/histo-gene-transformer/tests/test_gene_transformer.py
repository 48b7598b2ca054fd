"""The encoder as histo uses it: the contract check, shapes, errors, and a real training run.

Everything comes from `histo.testing` (a pytest plugin histo installs): `register_plugin` adds this
package's plugin module to a fresh plugin manager, `check_component` builds the encoder through the
registry exactly as the train stage does and checks shapes, padding and gradients, and
`tiny_cohort` + `run_recipe_text` train it end to end in-process.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from histo.errors import HistoError, RecipeError
from histo.manager import Plugins
from histo.testing import check_component, model_dims, run_recipe_text, synthetic_batch, tiny_cohort

from histo_gene_transformer import plugin


@pytest.fixture
def plugins(register_plugin: Callable[..., Plugins]) -> Plugins:
    return register_plugin(plugin, "gene_transformer", package="histo-gene-transformer")


def test_registers_without_failures(plugins: Plugins) -> None:
    entry = plugins.registry("omics_encoders").get("gene_transformer")
    assert entry.package == "histo-gene-transformer"
    assert not plugins.failures


@pytest.mark.parametrize("tokens", [False, True])
def test_meets_the_omics_encoder_contract(plugins: Plugins, tokens: bool) -> None:
    check_component(
        "omics_encoders", "gene_transformer", {"dim": 16, "heads": 2, "layers": 1, "tokens": tokens}
    )


def test_one_token_per_gene_group(plugins: Plugins) -> None:
    dims = model_dims(omics_groups={"tumour": 6, "microenvironment": 5, "immune": 4})
    module = plugins.registry("omics_encoders").build(
        "gene_transformer", {"dim": 8, "heads": 2, "tokens": True}
    )
    encoder = module.build(dims).eval()
    batch = synthetic_batch(dims, batch_size=2)
    out = encoder(batch["omics"])
    assert out.shape == (2, 3, 8) and encoder.tokens and encoder.output_dim == 8
    # the groups are told apart: swapping two groups' values changes the output
    swapped = dict(batch["omics"])
    swapped["tumour"] = torch.flip(swapped["tumour"], dims=[0])
    assert not torch.allclose(encoder(swapped), out)


def test_a_run_without_omics_is_a_clear_error(plugins: Plugins) -> None:
    builder = plugins.registry("omics_encoders").build("gene_transformer", {})
    with pytest.raises(HistoError, match=r"gene_transformer.*expression table"):
        builder.build(model_dims(omics_groups={}))


def test_heads_must_divide_dim(plugins: Plugins, load_recipe_text: Callable[..., Any]) -> None:
    recipe = (Path(__file__).parents[1] / "recipe.yaml").read_text()
    with pytest.raises(RecipeError, match=r"omics_encoder\.params.*must divide"):
        load_recipe_text(recipe, ["stages.train.params.model.omics_encoder.params.heads=3"])


def test_trains_end_to_end_in_a_recipe(plugins: Plugins, tmp_path: Path) -> None:
    cohort = tiny_cohort(tmp_path / "cohort", patients=12)
    recipe = cohort.train_recipe(
        "{omics_encoder: {name: gene_transformer, params: {dim: 16, heads: 2, layers: 1}}}", features=False
    )
    summary = run_recipe_text(recipe, tmp_path / "run")
    stage = summary["stages"][0]
    assert stage["status"] == "done"
    assert 0.0 <= stage["metrics"]["auc"] <= 1.0


def test_the_shipped_recipe_validates(plugins: Plugins, load_recipe_text: Callable[..., Any]) -> None:
    recipe = (Path(__file__).parents[1] / "recipe.yaml").read_text()
    loaded = load_recipe_text(recipe)
    assert "train" in [stage.id for stage in loaded.stages]
