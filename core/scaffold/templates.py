"""The files of a scaffolded plugin package, per component kind.

Tokens replaced when writing: __DIST__ (histo-lab-mil), __PACKAGE__ (histo_lab_mil), __COMPONENT__
(lab_mil, the name recipes use), __TITLE__ (LabMil, the class prefix), __KIND__ (slide_encoders).
Each component is a small real one (built on `histo.blocks` where it pools), written to be replaced.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Template:
    hook: str  # histo_slide_encoders
    summary: str  # one line for `histo plugins`
    config: str  # the pydantic config's fields (body of the class)
    module: str  # the component module's source
    usage: str  # how a recipe names it (YAML, for the README)
    end_to_end: str  # test functions after the contract check
    helper: str = "tiny_cohort"  # the histo.testing helper the end-to-end test uses

    def files(self, package: str) -> dict[str, str]:
        return {
            "pyproject.toml": PYPROJECT,
            "README.md": README.replace("__USAGE__", self.usage.strip("\n")),
            f"src/{package}/__init__.py": INIT,
            f"src/{package}/plugin.py": PLUGIN.replace("__HOOK__", self.hook)
            .replace("__SUMMARY__", self.summary)
            .replace("__CONFIG_FIELDS__", self.config.strip("\n")),
            f"src/{package}/component.py": self.module.lstrip("\n"),
            "tests/test_plugin.py": TESTS.replace("__HELPER__", self.helper) + self.end_to_end,
        }


INIT = '''"""__DIST__: a histo plugin providing the __KIND__ component '__COMPONENT__'."""
'''

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "__DIST__"
version = "0.1.0"
description = "histo plugin: __KIND__ '__COMPONENT__'"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["histo-mml", "pydantic>=2.5"]

[project.optional-dependencies]
test = ["pytest>=7.4"]

# histo finds the plugin through this entry point: its name is the plugin's name (for HISTO_PLUGINS and
# HISTO_DISABLE_PLUGINS), its value the module holding the @hookimpl functions.
[project.entry-points.histo]
__COMPONENT__ = "__PACKAGE__.plugin"

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
testpaths = ["tests"]
"""

README = """\
# __DIST__

A [histo](https://github.com/) plugin providing the __KIND__ component `__COMPONENT__`.

## Install and check

```bash
pip install -e .
histo plugins            # lists __COMPONENT__ under __KIND__, with this package and version
python -m pytest         # the tests use histo.testing: no subprocess, no data needed
```

## Use it in a recipe

```yaml
__USAGE__
```

## Develop

- `src/__PACKAGE__/plugin.py` registers the component and holds its config (keep torch out of it:
  histo imports it whenever it lists plugins).
- `src/__PACKAGE__/component.py` is the component; replace its body with yours.
- `tests/test_plugin.py` checks registration, the contract (`histo.testing.check_component`) and a
  run of a recipe that uses the component by name (`histo.testing.run_recipe_text`).

The contract of every kind is in histo's `docs/plugins.md`.
"""

PLUGIN = '''\
"""The entry point histo imports: the config and the hook. The component loads only when a run uses it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from histo import ComponentSpec, hookimpl


class __TITLE__Config(BaseModel):
    """Parameters of '__COMPONENT__' (a recipe's `params:`); descriptions show in `histo schema`."""

    model_config = ConfigDict(extra="forbid")
__CONFIG_FIELDS__


def build(config: __TITLE__Config) -> Any:
    from .component import __TITLE__  # torch and the model load here, when a recipe uses it

    return __TITLE__(config)


@hookimpl
def __HOOK__() -> Iterable[ComponentSpec[Any]]:
    return [ComponentSpec("__COMPONENT__", build, __TITLE__Config, "__SUMMARY__")]
'''

TESTS = '''\
"""Tests of the plugin with histo.testing (its fixtures are active wherever histo is installed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from histo.testing import check_component, run_recipe_text, __HELPER__

from __PACKAGE__ import plugin


def test_registers(register_plugin: Any) -> None:
    plugins = register_plugin(plugin, "__COMPONENT__", package="__DIST__")
    assert "__COMPONENT__" in plugins.registry("__KIND__")
    assert not plugins.failures


def test_keeps_the_contract(register_plugin: Any) -> None:
    register_plugin(plugin, "__COMPONENT__")
    check_component("__KIND__", "__COMPONENT__")
'''

_TRAIN = """

def test_trains_in_a_recipe(register_plugin: Any, tmp_path: Path) -> None:
    register_plugin(plugin, "__COMPONENT__")
    cohort = tiny_cohort(tmp_path / "cohort", patients=8)
    recipe = cohort.train_recipe(__MODEL__, epochs=1__OPTIONS__)
    summary = run_recipe_text(recipe, tmp_path / "run")
    assert [stage["status"] for stage in summary["stages"]] == ["done"]
"""


def _train(model: str, options: str = "") -> str:
    return _TRAIN.replace("__MODEL__", repr(model)).replace("__OPTIONS__", options)


_SLIDE_RECIPE = '''

def test_runs_in_a_recipe(register_plugin: Any, tmp_path: Path) -> None:
    register_plugin(plugin, "__COMPONENT__")
    small_slide(tmp_path / "slides" / "slide1.tif")
    recipe = f"""
stages:
  tile:
    stage: tile
    params:
      slides: {tmp_path / "slides"}
      magnifications: ["20x"]
      patch_size: 128
__TILE_EXTRA__
__EXTRACT__"""
    summary = run_recipe_text(recipe, tmp_path / "run")
    assert all(stage["status"] == "done" for stage in summary["stages"])
    assert list((tmp_path / "run" / "stages").glob(__OUTPUT__))
'''

OMICS = Template(
    hook="histo_omics_encoders",
    summary="one small network per gene group, one token per group",
    config="""
    output_dim: int = Field(32, ge=1, description="token size")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout after each group's network")
""",
    module='''
"""The omics encoder: a builder histo calls with the run's sizes, and the torch module it returns.

The module is called on batch["omics"] ({group: [B, genes]}) and returns one token per gene group,
[B, groups, output_dim] (`tokens = True`, `groups` their order); histo averages them where one vector
is needed. See histo's docs/plugins.md for the contract.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from histo.blocks import require_omics
from histo.interfaces import ModelDims


class __TITLE__Module(nn.Module):
    tokens = True

    def __init__(self, dims: ModelDims, output_dim: int, dropout: float) -> None:
        super().__init__()
        self.groups = list(dims.omics_groups)
        self.nets = nn.ModuleDict(
            {
                group: nn.Sequential(nn.Linear(genes, output_dim), nn.ELU(), nn.Dropout(dropout))
                for group, genes in dims.omics_groups.items()
            }
        )
        self.output_dim = output_dim

    def forward(self, omics: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([self.nets[group](omics[group]) for group in self.groups], dim=1)


class __TITLE__:
    """The builder: histo calls build(dims) once per fold, when the gene groups are known."""

    def __init__(self, config: Any) -> None:
        self.config = config

    def build(self, dims: ModelDims) -> nn.Module:
        require_omics(dims, "omics encoder '__COMPONENT__'")
        return __TITLE__Module(dims, self.config.output_dim, self.config.dropout)
''',
    usage="""
      model: {omics_encoder: __COMPONENT__}  # omics only
      # or, with slides:
      # model: {slide_encoder: abmil, omics_encoder: {name: __COMPONENT__, params: {output_dim: 64}},
      #         fusion: concat}
""",
    end_to_end=_train("{omics_encoder: __COMPONENT__}", ", features=False"),
)

SLIDE = Template(
    hook="histo_slide_encoders",
    summary="gated attention MIL, one pooling per magnification",
    config="""
    hidden: int = Field(64, ge=1, description="embedding size per magnification")
    attention_dim: int = Field(64, ge=1, description="width of the attention network")
    dropout: float = Field(0.25, ge=0, lt=1, description="dropout after the patch projection")
""",
    module='''
"""The slide encoder: a builder histo calls with the run's sizes, and the torch module it returns.

The module is called on the whole batch dict and returns {"embedding": [B, output_dim], "attention":
{mag: [B, N]}}; histo adds the linear head. Padded patches (batch["mask"] False) must not change the
outputs: histo.blocks pools with the mask. See histo's docs/plugins.md for the contract.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from histo.blocks import AttentionPool, per_magnification, require_features
from histo.interfaces import ModelDims


class __TITLE__Module(nn.Module):
    def __init__(self, dims: ModelDims, config: Any) -> None:
        super().__init__()
        self.views = list(dims.magnifications)
        self.pools = nn.ModuleDict(
            {
                view: AttentionPool(
                    config.hidden, config.attention_dim, in_dim=dims.feature_dim, dropout=config.dropout
                )
                for view in self.views
            }
        )
        self.output_dim = config.hidden * len(self.views)

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        pooled = per_magnification(batch, lambda view, x, mask: self.pools[view](x, mask), self.views)
        return {
            "embedding": torch.cat([embedding for embedding, _ in pooled.values()], dim=1),
            "attention": {view: weights for view, (_, weights) in pooled.items()},
        }


class __TITLE__:
    """The builder: histo calls build(dims) once per fold, when the feature size is known."""

    def __init__(self, config: Any) -> None:
        self.config = config

    def build(self, dims: ModelDims) -> nn.Module:
        require_features(dims, "slide encoder '__COMPONENT__'")
        return __TITLE__Module(dims, self.config)
''',
    usage="""
      model: {slide_encoder: __COMPONENT__}
      # or, with omics:
      # model: {slide_encoder: {name: __COMPONENT__, params: {hidden: 128}}, omics_encoder: snn,
      #         fusion: concat}
""",
    end_to_end=_train("{slide_encoder: __COMPONENT__}", ", omics=False"),
)

FUSION = Template(
    hook="histo_fusion_strategies",
    summary="gated sum of the slide and omics embeddings",
    config="""
    output_dim: int = Field(64, ge=1, description="size of the fused embedding")
""",
    module='''
"""The fusion strategy: a builder histo calls with the run's sizes and the recipe's encoder builders.

The module is called on the batch dict and returns the slide encoder's outputs with the fused
"embedding" [B, output_dim]; histo adds the head. See histo's docs/plugins.md for the contract.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from histo.blocks import embedding_dim, omics_vector
from histo.errors import HistoError
from histo.interfaces import ModelDims, OmicsEncoder, SlideEncoder


class __TITLE__Module(nn.Module):
    """Both embeddings projected to one size and mixed by a learned per-patient gate."""

    def __init__(self, slide: nn.Module, omics: nn.Module, output_dim: int) -> None:
        super().__init__()
        self.slide, self.omics = slide, omics
        self.slide_project = nn.Linear(embedding_dim(slide, "model.slide_encoder"), output_dim)
        self.omics_project = nn.Linear(embedding_dim(omics, "model.omics_encoder"), output_dim)
        self.gate = nn.Linear(2 * output_dim, 1)
        self.output_dim = output_dim

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        slide_out = self.slide(batch)
        s = self.slide_project(slide_out["embedding"])
        o = self.omics_project(omics_vector(self.omics, batch["omics"]))
        gate = torch.sigmoid(self.gate(torch.cat([s, o], dim=1)))
        return {**slide_out, "embedding": gate * s + (1 - gate) * o}


class __TITLE__:
    """The builder: `slide_encoder` and `omics_encoder` are the recipe's encoder builders (or None)."""

    def __init__(self, config: Any) -> None:
        self.config = config

    def build(
        self, dims: ModelDims, slide_encoder: SlideEncoder | None, omics_encoder: OmicsEncoder | None
    ) -> nn.Module:
        if slide_encoder is None or omics_encoder is None:
            raise HistoError(
                "fusion '__COMPONENT__' needs model.slide_encoder and model.omics_encoder in the recipe"
            )
        return __TITLE__Module(slide_encoder.build(dims), omics_encoder.build(dims), self.config.output_dim)
''',
    usage="""
      model: {slide_encoder: abmil, omics_encoder: snn, fusion: __COMPONENT__}
""",
    end_to_end=_train("{slide_encoder: abmil, omics_encoder: snn, fusion: __COMPONENT__}"),
)

AGGREGATOR = Template(
    hook="histo_token_aggregators",
    summary="K runs of consecutive tokens, averaged",
    config="""
    tokens: int = Field(2, ge=1, description="number K of output tokens")
""",
    module='''
"""The token aggregator: build(dim) returns a module mapping (tokens [B, N, dim], mask [B, N]) to
{"tokens": [B, K, dim], "assignment": [B, N] (-1 on padding), "weights": [B, N]}. See histo's
docs/plugins.md for the contract.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class __TITLE__Module(nn.Module):
    """The real tokens, in bag order, cut into K runs of equal length; each run's mean is one token."""

    def __init__(self, tokens: int) -> None:
        super().__init__()
        self.num_tokens = tokens

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        count = mask.sum(1, keepdim=True).clamp_min(1)
        rank = mask.long().cumsum(1) - 1
        assignment = torch.where(mask, rank * self.num_tokens // count, torch.full_like(rank, -1))
        member = nn.functional.one_hot(assignment.clamp_min(0), self.num_tokens).to(x.dtype)
        member = member * mask.unsqueeze(-1)
        share = member / member.sum(1).clamp_min(1).unsqueeze(1)
        merged = torch.einsum("bnk,bnd->bkd", share, x.masked_fill(~mask.unsqueeze(-1), 0.0))
        return {"tokens": merged, "assignment": assignment, "weights": share.sum(-1)}


class __TITLE__:
    def __init__(self, config: Any) -> None:
        self.config = config

    def build(self, dim: int) -> nn.Module:
        return __TITLE__Module(self.config.tokens)
''',
    usage="""
      model:
        slide_encoder:
          name: dmf_student
          params: {aggregator: {name: __COMPONENT__, params: {tokens: 2}}}
""",
    end_to_end=_train(
        "{slide_encoder: {name: dmf_student, params: {dim: 16, aggregator: __COMPONENT__}}}", ", omics=False"
    ),
)

EXTRACTOR = Template(
    hook="histo_feature_extractors",
    summary="per-channel colour histograms of a patch",
    config="""
    bins: int = Field(8, ge=2, le=64, description="histogram bins per RGB channel")
    input_size: int = Field(64, ge=8, description="patches are resized to this many pixels a side")
""",
    module='''
"""The feature extractor describes an encoder; histo's engine resizes, normalises, batches and writes.

build() returns a module mapping [N, 3, input_size, input_size] to [N, output_dim]; load a lab's own
weights there (once per process). See histo's docs/plugins.md and docs/features.md.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from histo.interfaces import FeatureExtractor


class __TITLE__Module(nn.Module):
    def __init__(self, bins: int) -> None:
        super().__init__()
        self.bins = bins

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = (x.clamp(0, 1) * (self.bins - 1)).round().long().flatten(2)  # [N, 3, pixels]
        counts = torch.zeros(x.shape[0], 3, self.bins, dtype=x.dtype, device=x.device)
        counts.scatter_add_(2, index, torch.ones_like(index, dtype=x.dtype))
        return (counts / index.shape[-1]).flatten(1)


class __TITLE__(FeatureExtractor):
    mean = (0.0, 0.0, 0.0)
    std = (1.0, 1.0, 1.0)  # the module sees pixel values in [0, 1]

    def __init__(self, config: Any) -> None:
        self.bins = config.bins
        self.input_size = config.input_size
        self.output_dim = 3 * config.bins

    def build(self) -> nn.Module:
        return __TITLE__Module(self.bins)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "bins": self.bins}
''',
    usage="""
  extract:
    stage: extract
    params: {tiles: tile, extractor: {name: __COMPONENT__, params: {bins: 16}}}
""",
    end_to_end=_SLIDE_RECIPE.replace("__TILE_EXTRA__\n", "")
    .replace(
        "__EXTRACT__",
        "  extract:\n    stage: extract\n    params:\n      tiles: tile\n      extractor: __COMPONENT__\n",
    )
    .replace("__OUTPUT__", '"extract/features/20x/*.h5"'),
    helper="small_slide",
)

SEGMENTER = Template(
    hook="histo_tissue_segmenters",
    summary="tissue where a thumbnail's colour saturation passes a threshold",
    config="""
    saturation: float = Field(0.08, gt=0, lt=1, description="HSV saturation above which a pixel is tissue")
    thumbnail_size: int = Field(1024, ge=64, description="longer side of the image segmented")
""",
    module='''
"""The tissue segmenter: segment(slide) -> TissueMask on a low-resolution image of the slide.

Read a reduced level (slide.thumbnail), never level 0 of a whole slide. See histo's docs/plugins.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from histo.interfaces import Slide, TissueMask, TissueSegmenter


class __TITLE__(TissueSegmenter):
    def __init__(self, config: Any) -> None:
        self.config = config

    def segment(self, slide: Slide) -> TissueMask:
        image, downsample = slide.thumbnail(self.config.thumbnail_size)
        rgb = image.astype(np.float32) / 255
        high, low = rgb.max(axis=-1), rgb.min(axis=-1)
        saturation = np.where(high > 0, (high - low) / np.maximum(high, 1e-6), 0.0)
        return TissueMask(saturation > self.config.saturation, downsample)
''',
    usage="""
  tile:
    stage: tile
    params: {slides: slides/, segmenter: {name: __COMPONENT__, params: {saturation: 0.1}}}
""",
    end_to_end=_SLIDE_RECIPE.replace("__TILE_EXTRA__", "      segmenter: __COMPONENT__")
    .replace("__EXTRACT__", "")
    .replace("__OUTPUT__", '"tile/coords/20x/*.h5"'),
    helper="small_slide",
)

KINDS: dict[str, Template] = {
    "omics_encoders": OMICS,
    "slide_encoders": SLIDE,
    "fusion_strategies": FUSION,
    "token_aggregators": AGGREGATOR,
    "feature_extractors": EXTRACTOR,
    "tissue_segmenters": SEGMENTER,
}
