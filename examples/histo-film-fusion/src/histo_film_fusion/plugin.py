"""The module the `histo` entry point names: one hook, cheap to import (no torch here)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from histo import ComponentSpec, hookimpl
from histo.errors import HistoError
from histo.interfaces import ModelDims, OmicsEncoder, SlideEncoder

from .config import FilmConfig


class FilmBuilder:
    """histo's fusion_strategies contract: `build(dims, slide_encoder, omics_encoder)` returns the
    module. The two encoders are the *builders* the recipe names under `model:` (None when absent);
    a fusion builds those it uses."""

    def __init__(self, config: FilmConfig) -> None:
        self.config = config

    def build(
        self, dims: ModelDims, slide_encoder: SlideEncoder | None, omics_encoder: OmicsEncoder | None
    ) -> Any:
        from .model import FilmFusion  # torch loads only when a recipe uses the fusion

        if omics_encoder is None:
            raise HistoError(
                "fusion 'film' is conditioned on the transcriptome: add `omics_encoder:` (e.g. snn) "
                "next to `fusion: film` under the train stage's `model:`"
            )
        slide = slide_encoder.build(dims) if slide_encoder is not None else None
        return FilmFusion(dims, omics_encoder.build(dims), slide, self.config)


@hookimpl
def histo_fusion_strategies() -> Iterable[ComponentSpec[Any]]:
    return [
        ComponentSpec(
            "film",
            FilmBuilder,
            FilmConfig,
            "the omics embedding scales and shifts patch features (FiLM) before gated attention pooling",
        )
    ]
