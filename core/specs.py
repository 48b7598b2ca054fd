"""The record a hook returns for each component it provides (conda-style: records, not side effects)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


class EmptyConfig(BaseModel):
    """Config for components that take no parameters: any key is an error."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class ComponentSpec(Generic[T]):
    """One component a plugin offers.

    `factory` is called with an instance of `config` (already validated) and returns the component.
    Import heavy dependencies inside the factory so listing plugins stays fast.
    """

    name: str
    factory: Callable[[Any], T]
    config: type[BaseModel] = EmptyConfig
    description: str = ""

    def __post_init__(self) -> None:
        if not NAME_PATTERN.match(self.name):
            raise ValueError(
                f"component name {self.name!r} must be lowercase letters, digits and underscores, "
                "starting with a letter"
            )
        if not (isinstance(self.config, type) and issubclass(self.config, BaseModel)):
            raise TypeError(f"component {self.name!r}: config must be a pydantic model class")
        if self.config.model_config.get("extra") != "forbid":
            raise TypeError(
                f"component {self.name!r}: config {self.config.__name__} must set extra='forbid' "
                "so that a misspelt parameter is an error"
            )

    def build(self, params: BaseModel | dict[str, Any] | None = None) -> T:
        """Validate `params` (if raw) and call the factory."""
        config = params if isinstance(params, self.config) else self.config.model_validate(params or {})
        return self.factory(config)
