from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict

from histo import ComponentSpec
from histo.errors import DuplicateComponentError, UnknownComponentError
from histo.registry import Registered, Registry


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int = 3


def entry(name: str, package: str = "pkg-a", plugin: str = "a") -> Registered[object]:
    return Registered(
        "tasks", ComponentSpec(name, lambda c: ("built", c.size), Config, "d"), plugin, package, "1.0"
    )


def test_get_and_build_validates_params() -> None:
    registry: Registry[object] = Registry("tasks")
    registry.add(entry("survival"))
    assert registry.build("survival", {"size": 7}) == ("built", 7)
    assert registry.names() == ["survival"]
    with pytest.raises(Exception, match="size"):
        registry.build("survival", {"size": "many"})


def test_duplicate_names_both_packages() -> None:
    registry: Registry[object] = Registry("tasks")
    registry.add(entry("survival", "histo-mml", "tasks"))
    with pytest.raises(DuplicateComponentError) as info:
        registry.add(entry("survival", "histo-other", "other"))
    message = str(info.value)
    assert "histo-mml" in message and "histo-other" in message and "HISTO_DISABLE_PLUGINS=other" in message
    with pytest.raises(DuplicateComponentError):
        registry.get("survival")  # ambiguous from now on, not silently the first


def test_unknown_name_suggests_close_matches() -> None:
    registry: Registry[object] = Registry("tasks")
    registry.add(entry("survival"))
    registry.add(entry("classification"))
    with pytest.raises(UnknownComponentError, match="did you mean 'survival'"):
        registry.get("survivl")
    with pytest.raises(UnknownComponentError, match="available: classification, survival"):
        registry.get("zzz")


@pytest.mark.parametrize("name", ["Survival", "2d", "with-dash", ""])
def test_spec_rejects_bad_names(name: str) -> None:
    with pytest.raises(ValueError, match="lowercase"):
        ComponentSpec(name, lambda c: c, Config)


def test_spec_requires_forbidding_config() -> None:
    class Loose(BaseModel):
        size: int = 1

    with pytest.raises(TypeError, match="extra='forbid'"):
        ComponentSpec("loose", lambda c: c, Loose)
