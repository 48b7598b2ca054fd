"""The module the `histo` entry point names: one hook, cheap to import (no torch here)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from histo import ComponentSpec, hookimpl

from .config import LabCnnConfig


def build_lab_cnn(config: LabCnnConfig) -> Any:
    from .extractor import LabCnnExtractor  # torch loads only when a recipe uses the extractor

    return LabCnnExtractor(config)


@hookimpl
def histo_feature_extractors() -> Iterable[ComponentSpec[Any]]:
    return [
        ComponentSpec(
            "lab_cnn",
            build_lab_cnn,
            LabCnnConfig,
            "the lab's own CNN, trained weights loaded from a state_dict file on disk",
        )
    ]
