"""Recipes: YAML files validated in two phases (recipe shape, then each component's own config)."""

from .bounds import Seed
from .loader import load_recipe, parse_overrides, resolve_config
from .model import Recipe, StageEntry
from .refs import (
    ClassicalModelRef,
    ComponentRef,
    DistillerRef,
    FeatureExtractorRef,
    FusionStrategyRef,
    GradientCoordinatorRef,
    InputPath,
    OmicsEncoderRef,
    SlideEncoderRef,
    SlideReaderRef,
    StageRef,
    TaskRef,
    TissueSegmenterRef,
    TokenAggregatorRef,
)

__all__ = [
    "ClassicalModelRef",
    "ComponentRef",
    "DistillerRef",
    "FeatureExtractorRef",
    "FusionStrategyRef",
    "GradientCoordinatorRef",
    "InputPath",
    "OmicsEncoderRef",
    "Recipe",
    "Seed",
    "SlideEncoderRef",
    "SlideReaderRef",
    "StageEntry",
    "StageRef",
    "TaskRef",
    "TissueSegmenterRef",
    "TokenAggregatorRef",
    "load_recipe",
    "parse_overrides",
    "resolve_config",
]
