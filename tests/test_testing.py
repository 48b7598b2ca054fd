"""`histo.testing` for model authors: synthetic inputs, `check_component` on every default model
component (and on broken ones, which it must catch), and in-process runs of recipes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from histo import ComponentSpec, hookimpl
from histo.interfaces import ModelDims
from histo.manager import Plugins
from histo.testing import (
    ContractError,
    check_component,
    model_dims,
    run_recipe_text,
    sample_of,
    small_slide,
    synthetic_batch,
    tiny_cohort,
)

MODEL_KINDS = ("omics_encoders", "slide_encoders", "fusion_strategies", "token_aggregators")
# the defaults are sized for real bags; these keep the check to a second or so on a busy CPU
SMALL: dict[str, dict[str, Any]] = {
    "transmil": {"dim": 16, "heads": 4, "landmarks": 4, "residual_kernel": 5},
    # the default (reference) preset's full-map consistency needs equal bag sizes at every magnification
    "dmf": {"dim": 16, "consistency": "query_mean"},
    "dmf_student": {"dim": 16},
    "mcat": {"dim": 16, "heads": 2, "feedforward": 16},
}


def _defaults() -> list[tuple[str, str]]:
    plugins = Plugins(load_entry_points=False, env={})
    return [(kind, name) for kind in MODEL_KINDS for name in plugins.registry(kind).names()]


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny models: thread start-up costs more than it saves, badly so on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- synthetic inputs -------------------------------------------------------------------------------
def test_synthetic_batch_is_what_the_trainer_collates() -> None:
    dims = model_dims(feature_dim=5, omics_groups={"a": 2, "b": 3}, num_outputs=4)
    batch = synthetic_batch(dims, batch_size=4, seed=1)
    assert set(batch) == {"patient_id", "target", "features", "mask", "coords", "omics"}
    assert batch["target"].dtype == torch.int64 and batch["target"].shape == (4,)
    assert int(batch["target"].max()) < 4
    for mag in ("10x", "20x"):
        features, mask = batch["features"][mag], batch["mask"][mag]
        assert features.dtype == torch.float32 and features.shape[::2] == (4, 5)
        assert mask.dtype == torch.bool and mask.shape == features.shape[:2]
        lengths = mask.sum(1)
        assert lengths[0] == mask.shape[1] and (lengths[1:] < lengths[0]).all()  # ragged, padded
        assert (features[~mask] == 0).all() and batch["coords"][mag].shape == (*mask.shape, 2)
    assert {g: x.shape for g, x in batch["omics"].items()} == {"a": (4, 2), "b": (4, 3)}
    survival = synthetic_batch(dims, batch_size=2, task="survival")
    assert survival["target"].shape == (2, 3)
    same = synthetic_batch(dims, batch_size=4, seed=1)
    torch.testing.assert_close(same["features"]["20x"], batch["features"]["20x"])


def test_sample_of_strips_the_padding() -> None:
    batch = synthetic_batch(model_dims(), batch_size=3)
    last = sample_of(batch, 2)
    n = int(batch["mask"]["10x"][2].sum())
    assert last["features"]["10x"].shape == (1, n, 16) and last["mask"]["10x"].all()
    torch.testing.assert_close(last["omics"]["tumour"][0], batch["omics"]["tumour"][2])


def test_small_slide_opens_with_its_pixel_size(tmp_path: Path, histo_plugins: Plugins) -> None:
    path = small_slide(tmp_path / "s.tif", size=(1200, 900), mpp=0.25)
    reader = histo_plugins.registry("slide_readers").build("openslide", {})
    with reader.open(path) as slide:
        assert slide.dimensions == (1200, 900) and slide.level_count >= 3
        assert slide.mpp.mean == pytest.approx(0.25) and slide.mpp.source == "metadata"
        region = slide.read_region((500, 400), 0, (64, 64))
        assert region.shape == (64, 64, 3) and region.dtype == np.uint8


# ---- check_component: every default component passes --------------------------------------------------
@pytest.mark.parametrize(("kind", "name"), _defaults())
def test_default_components_keep_the_contract(histo_plugins: Plugins, kind: str, name: str) -> None:
    out = check_component(kind, name, SMALL.get(name))
    if kind != "token_aggregators":
        assert out["logits"].shape == (3, 3)


@pytest.mark.parametrize(
    ("kind", "name"), [("feature_extractors", "handcrafted"), ("tissue_segmenters", "otsu")]
)
def test_other_kinds_are_checked(histo_plugins: Plugins, kind: str, name: str) -> None:
    check_component(kind, name)


def test_survival_sized_dims_and_one_magnification(histo_plugins: Plugins) -> None:
    dims = model_dims(feature_dim=7, num_outputs=4, magnifications=("20x",))
    check_component("slide_encoders", "abmil", {"hidden": 8}, dims=dims)
    check_component("fusion_strategies", "concat", dims=dims, slide_encoder="mean", omics_encoder="mlp")


# ---- check_component: broken components are caught, with a message saying what to fix -----------------
class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModuleNotBuilder(nn.Module):
    """What an older page described: the module itself, called on (features, mask)."""

    def __init__(self, config: _Config) -> None:
        super().__init__()
        self.output_dim = 4


class PlainMean(nn.Module):
    """Averages every position, padding included."""

    def __init__(self, dims: ModelDims, detach: bool = False, declare: bool = True) -> None:
        super().__init__()
        self.project = nn.Linear(dims.feature_dim, 4)
        self.views = list(dims.magnifications)
        self.detach = detach
        if declare:
            self.output_dim = 4 * len(self.views)

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        pooled = torch.cat([self.project(batch["features"][v]).mean(1) for v in self.views], dim=1)
        return {"embedding": pooled.detach() if self.detach else pooled}


class MaskedMean(PlainMean):
    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        from histo.blocks import masked_mean

        parts = [masked_mean(self.project(batch["features"][v]), batch["mask"][v]) for v in self.views]
        pooled = torch.cat(parts, dim=1)
        return {"embedding": pooled.detach() if self.detach else pooled}


class UnmaskedSum(PlainMean):
    """Sums every position (no bias): zero padding adds nothing, but whatever else sits there leaks in."""

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        weight = self.project.weight
        parts = [nn.functional.linear(batch["features"][v], weight).sum(1) for v in self.views]
        return {"embedding": torch.cat(parts, dim=1)}


class Builder:
    def __init__(self, module: type[PlainMean], **options: Any) -> None:
        self.module, self.options = module, options

    def build(self, dims: ModelDims) -> nn.Module:
        return self.module(dims, **self.options)


class Broken:
    @hookimpl
    def histo_slide_encoders(self) -> Iterable[ComponentSpec[Any]]:
        return [
            ComponentSpec("module_not_builder", ModuleNotBuilder, _Config),
            ComponentSpec("unmasked", lambda c: Builder(PlainMean), _Config),
            ComponentSpec("detached", lambda c: Builder(MaskedMean, detach=True), _Config),
            ComponentSpec("no_output_dim", lambda c: Builder(MaskedMean, declare=False), _Config),
            ComponentSpec("masked", lambda c: Builder(MaskedMean), _Config),
            ComponentSpec("unmasked_sum", lambda c: Builder(UnmaskedSum), _Config),
        ]

    @hookimpl
    def histo_token_aggregators(self) -> Iterable[ComponentSpec[Any]]:
        return [ComponentSpec("keeps_padding", lambda c: KeepsPaddingBuilder(), _Config)]


class KeepsPadding(nn.Module):
    """One output token, the masked mean, but padding is assigned to it too (must be -1)."""

    def forward(self, x: Tensor, mask: Tensor) -> dict[str, Tensor]:
        from histo.blocks import masked_mean

        weights = mask.float() / mask.sum(1, keepdim=True).clamp_min(1)
        return {
            "tokens": masked_mean(x, mask)[:, None],
            "assignment": torch.zeros_like(mask, dtype=torch.long),
            "weights": weights,
        }


class KeepsPaddingBuilder:
    def build(self, dim: int) -> nn.Module:
        return KeepsPadding()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("module_not_builder", r"returned ModuleNotBuilder, which has no build\(\) method"),
        ("unmasked", r"differ when it is alone in a batch .* batch\['mask'\]"),
        ("detached", r"no gradient reaches the component's parameters"),
        ("no_output_dim", r"must expose an integer `output_dim`"),
        ("unmasked_sum", r"logits change when the padded positions of the bags hold other values"),
    ],
)
def test_broken_components_fail_with_a_clear_message(register_plugin: Any, name: str, message: str) -> None:
    register_plugin(Broken(), "broken")
    check_component("slide_encoders", "masked")  # the same module, honouring the mask, passes
    with pytest.raises(ContractError, match=message) as caught:
        check_component("slide_encoders", name)
    assert isinstance(caught.value, AssertionError) and f"slide_encoders {name!r}" in str(caught.value)


# ---- in-process runs ----------------------------------------------------------------------------------
def test_tiny_cohort_trains_in_process_with_a_registered_plugin(register_plugin: Any, tmp_path: Path) -> None:
    register_plugin(Broken(), "broken")
    cohort = tiny_cohort(tmp_path / "cohort", patients=10)
    bags = list((cohort.features / "features" / "20x").glob("*.h5"))
    assert len(bags) == 15  # every other patient has two slides
    text = cohort.train_recipe("{slide_encoder: masked, omics_encoder: snn, fusion: concat}", epochs=2)
    summary = run_recipe_text(text, tmp_path / "run")
    assert summary["status"] == "done" and [s["status"] for s in summary["stages"]] == ["done"]
    predictions = (tmp_path / "run" / "stages" / "train" / "predictions.csv").read_text().splitlines()
    assert len(predictions) == 1 + 10
    again = run_recipe_text(text, tmp_path / "run", overrides=["stages.train.params.training.epochs=2"])
    assert again["stages"][0]["status"] == "cached"


def test_a_failed_run_is_an_assertion_naming_the_stage(histo_plugins: Plugins, tmp_path: Path) -> None:
    cohort = tiny_cohort(tmp_path / "cohort", patients=6)
    text = cohort.train_recipe("{fusion: concat}", omics=False)
    with pytest.raises(AssertionError, match=r"train: .*fusion 'concat' needs both"):
        run_recipe_text(text, tmp_path / "run")
    summary = run_recipe_text(text, tmp_path / "run2", check=False)
    assert summary["status"] == "failed"


def test_an_aggregator_that_assigns_padding_fails(register_plugin: Any) -> None:
    register_plugin(Broken(), "broken")
    with pytest.raises(ContractError, match=r"'assignment' must be -1 at padded positions"):
        check_component("token_aggregators", "keeps_padding")
