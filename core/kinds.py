"""The component kinds histo knows, in pipeline order. One hook per kind (see hookspecs.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    name: str  # registry key and recipe vocabulary, e.g. "tissue_segmenters"
    interface: str  # the class in histo.interfaces that components of this kind implement
    summary: str

    @property
    def hook(self) -> str:
        return f"histo_{self.name}"


KINDS: tuple[Kind, ...] = (
    Kind("slide_readers", "SlideReader", "open whole-slide images and read regions"),
    Kind("tissue_segmenters", "TissueSegmenter", "find tissue on a low-resolution level"),
    Kind("feature_extractors", "FeatureExtractor", "turn patches into feature vectors"),
    Kind("omics_encoders", "OmicsEncoder", "embed expression profiles or gene groups"),
    Kind("slide_encoders", "SlideEncoder", "aggregate a bag of patch features (WSI only)"),
    Kind("fusion_strategies", "FusionStrategy", "combine slide and omics representations"),
    Kind("token_aggregators", "TokenAggregator", "reduce a token set to a few informative tokens"),
    Kind("gradient_coordinators", "GradientCoordinator", "adjust gradients between subspaces"),
    Kind("distillers", "Distiller", "distil a teacher into a student"),
    Kind("tasks", "Task", "labels, head, loss and metrics of a prediction target"),
    Kind(
        "classical_models", "ClassicalModel", "penalised linear, Cox and forest models on tabular inputs"
    ),
    Kind("stages", "Stage", "one step of a recipe, reading and writing files in the run directory"),
)

KIND_NAMES: tuple[str, ...] = tuple(k.name for k in KINDS)


def kind(name: str) -> Kind:
    for k in KINDS:
        if k.name == name:
            return k
    raise KeyError(f"unknown component kind {name!r}; kinds are: {', '.join(KIND_NAMES)}")
