"""The extractor as histo uses it: the contract check, the lab's weights really loaded (and refused
when they do not fit), and a real tiling + extraction run on a small slide, with `histo.testing`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import h5py
import pytest
import torch
from histo.errors import HistoError, RecipeError
from histo.manager import Plugins
from histo.testing import check_component, run_recipe_text, small_slide

from histo_lab_cnn import plugin
from histo_lab_cnn.model import LabCNN

ARCH = {"width": 8, "blocks": 2, "output_dim": 16}


@pytest.fixture
def plugins(register_plugin: Callable[..., Plugins]) -> Plugins:
    return register_plugin(plugin, "lab_cnn", package="histo-lab-cnn")


@pytest.fixture
def trained(tmp_path: Path) -> tuple[LabCNN, Path]:
    """What a lab has after training: the model, and its weights saved with torch.save(state_dict)."""
    torch.manual_seed(3)
    model = LabCNN(**ARCH)
    for module in model.modules():  # batch-norm statistics as training leaves them, not the defaults
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "lab_cnn.pt"
    torch.save(model.state_dict(), path)
    return model.eval(), path


def params(path: Path, **extra: object) -> dict[str, object]:
    return {"weights": str(path), **ARCH, "input_size": 64, **extra}


def test_registers_without_failures(plugins: Plugins) -> None:
    assert plugins.registry("feature_extractors").get("lab_cnn").package == "histo-lab-cnn"
    assert not plugins.failures  # `weights` has no default, so no default can be invalid


def test_meets_the_feature_extractor_contract(plugins: Plugins, trained: tuple[LabCNN, Path]) -> None:
    check_component("feature_extractors", "lab_cnn", params(trained[1]))


def test_the_labs_weights_are_the_ones_used(plugins: Plugins, trained: tuple[LabCNN, Path]) -> None:
    model, path = trained
    extractor = plugins.registry("feature_extractors").build("lab_cnn", params(path))
    built = extractor.build()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(built(x), model(x))
    description = extractor.describe()
    assert description["output_dim"] == 16 and len(description["weights_sha256"]) == 64
    json.dumps(description)


def test_training_checkpoints_and_ddp_prefixes_load(
    plugins: Plugins, trained: tuple[LabCNN, Path], tmp_path: Path
) -> None:
    model, _ = trained
    checkpoint = tmp_path / "epoch_10.ckpt"
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"epoch": 10, "state_dict": state}, checkpoint)
    built = plugins.registry("feature_extractors").build("lab_cnn", params(checkpoint)).build()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(built(x), model(x))


def test_weights_for_another_architecture_are_refused(plugins: Plugins, trained: tuple[LabCNN, Path]) -> None:
    extractor = plugins.registry("feature_extractors").build("lab_cnn", params(trained[1], width=16))
    with pytest.raises(HistoError, match=r"does not fit lab_cnn\(width=16.*shape"):
        extractor.build()


def test_a_pickled_model_is_refused(plugins: Plugins, trained: tuple[LabCNN, Path], tmp_path: Path) -> None:
    whole = tmp_path / "whole.pt"
    torch.save(trained[0], whole)
    with pytest.raises(
        HistoError, match=r"holds pickled Python objects .*torch.save\(model.state_dict\(\), path\)"
    ):
        plugins.registry("feature_extractors").build("lab_cnn", params(whole)).build()


def test_a_missing_weights_file_fails_validation(
    plugins: Plugins, load_recipe_text: Callable[..., object], tmp_path: Path
) -> None:
    recipe = f"""
stages:
  tile: {{stage: tile, params: {{slides: {tmp_path}}}}}
  extract:
    stage: extract
    params: {{tiles: tile, extractor: {{name: lab_cnn, params: {{weights: {tmp_path / "nope.pt"}}}}}}}
"""
    with pytest.raises(RecipeError, match=r"extractor\.params\.weights.*does not exist"):
        load_recipe_text(recipe)


def test_tiles_and_extracts_a_slide_in_a_recipe(
    plugins: Plugins, trained: tuple[LabCNN, Path], tmp_path: Path
) -> None:
    slide = small_slide(tmp_path / "slides" / "demo.tiff")
    recipe = f"""
stages:
  tile:
    stage: tile
    params: {{slides: {slide}, magnifications: ["10x"], patch_size: 64}}
  extract:
    stage: extract
    params:
      tiles: tile
      extractor: {{name: lab_cnn, params: {json.dumps(params(trained[1]))}}}
"""
    summary = run_recipe_text(recipe, tmp_path / "run")
    assert [s["status"] for s in summary["stages"]] == ["done", "done"]
    (bag,) = (tmp_path / "run" / "stages" / "extract" / "features" / "10x").glob("*.h5")
    with h5py.File(bag) as f:
        assert f["features"].shape[1] == 16 and f["features"].shape[0] > 0
        config = json.loads(f.attrs["extractor_config"])
    assert config["weights_sha256"] and config["extractor"] == "lab_cnn"


def test_the_shipped_recipe_validates(
    plugins: Plugins, trained: tuple[LabCNN, Path], load_recipe_text: Callable[..., object]
) -> None:
    recipe = (Path(__file__).parents[1] / "recipe.yaml").read_text()
    weights = f"stages.extract.params.extractor.params.weights={trained[1]}"
    with pytest.raises(RecipeError, match=r"lab_cnn\.pt does not exist"):  # until the lab's file is given
        load_recipe_text(recipe)
    width = "stages.extract.params.extractor.params.width=8"
    blocks = "stages.extract.params.extractor.params.blocks=2"
    loaded = load_recipe_text(recipe, [weights, width, blocks])
    assert loaded.stages[2].config.extractor.config.weights == trained[1]
