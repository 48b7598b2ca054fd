"""Types that stage and component configs use to point at other components, stages and input files.

A `ComponentRef` field names a component of one kind (`{name: otsu, params: {...}}` or just `otsu`);
its params are validated against that component's config in the recipe's second phase.
`StageRef` names an upstream stage; `InputPath` marks a file or folder whose content is part of
the stage's cache key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, PrivateAttr, model_validator


class StageInputMarker:
    """Metadata marking a str field as the id of an upstream stage."""


class InputPathMarker:
    """Metadata marking a Path field as an external input of the stage."""


StageRef = Annotated[str, StageInputMarker()]
InputPath = Annotated[Path, InputPathMarker()]


def _tag_kind(schema: dict[str, Any], model: type[Any]) -> None:
    schema["x-histo-kind"] = model.kind


class ComponentRef(BaseModel):
    """A component by name with its parameters; subclasses fix the kind."""

    # the schema tag lets `histo schema` offer the installed components of this kind
    model_config = ConfigDict(extra="forbid", json_schema_extra=_tag_kind)
    kind: ClassVar[str] = ""

    name: str
    params: dict[str, Any] = {}
    _config: BaseModel | None = PrivateAttr(default=None)
    _spec: Any = PrivateAttr(default=None)  # the ComponentSpec it was validated against
    # (package, version[, source digest]) that provided it; the digest only for editable/local plugins
    _source: tuple[str, ...] | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _accept_bare_name(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @property
    def config(self) -> BaseModel:
        """The validated config (available once the recipe has been validated)."""
        if self._config is None:
            raise RuntimeError(f"{self.kind} {self.name!r} has not been validated against its plugin")
        return self._config

    def build(self) -> Any:
        """Construct the component from its validated config."""
        spec = self._spec
        if spec is None:
            from ..manager import get_plugins

            spec = get_plugins().registry(self.kind).get(self.name).spec
        return spec.factory(
            self._config if self._config is not None else spec.config.model_validate(self.params)
        )


class SlideReaderRef(ComponentRef):
    kind: ClassVar[str] = "slide_readers"


class TissueSegmenterRef(ComponentRef):
    kind: ClassVar[str] = "tissue_segmenters"


class FeatureExtractorRef(ComponentRef):
    kind: ClassVar[str] = "feature_extractors"


class OmicsEncoderRef(ComponentRef):
    kind: ClassVar[str] = "omics_encoders"


class SlideEncoderRef(ComponentRef):
    kind: ClassVar[str] = "slide_encoders"


class FusionStrategyRef(ComponentRef):
    kind: ClassVar[str] = "fusion_strategies"


class TokenAggregatorRef(ComponentRef):
    kind: ClassVar[str] = "token_aggregators"


class GradientCoordinatorRef(ComponentRef):
    kind: ClassVar[str] = "gradient_coordinators"


class DistillerRef(ComponentRef):
    kind: ClassVar[str] = "distillers"


class TaskRef(ComponentRef):
    kind: ClassVar[str] = "tasks"


class ClassicalModelRef(ComponentRef):
    kind: ClassVar[str] = "classical_models"
