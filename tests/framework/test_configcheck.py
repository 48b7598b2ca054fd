"""Config defaults are checked against the config's own constraints when a plugin registers."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from histo.configcheck import default_problems


class Forbid(BaseModel):
    model_config = ConfigDict(extra="forbid")


def test_a_default_outside_its_bounds_is_named() -> None:
    class Config(Forbid):
        k: int = Field(0, ge=1)
        ok: float = Field(0.5, ge=0, le=1)

    assert default_problems(Config) == [
        "field 'k': default 0 is invalid: Input should be greater than or equal to 1"
    ]


def test_field_validators_and_default_factories_are_applied() -> None:
    class Config(Forbid):
        sizes: list[int] = Field(default_factory=lambda: [1, -2])
        name: str = "Otsu"

        @field_validator("name")
        @classmethod
        def _lower(cls, value: str) -> str:
            if value != value.lower():
                raise ValueError("must be lowercase")
            return value

    problems = default_problems(Config)
    assert len(problems) == 1 and "field 'name'" in problems[0] and "lowercase" in problems[0]
    # list items are checked by type, not sign: no constraint was broken
    assert not [p for p in problems if "sizes" in p]


def test_what_is_not_a_broken_default_passes() -> None:
    class Config(Forbid):
        required: int = Field(ge=1)  # no default: nothing to check
        unset: int = None  # type: ignore[assignment]  # "not set", handled by the component's code
        alias_field: int = Field(3, alias="aliasField", ge=0)

    class Choose(Forbid):
        slides: str | None = None
        slides_from: str | None = None

        @model_validator(mode="after")
        def _one(self) -> Choose:  # a model-level rule may reject the defaults to make the user choose
            if (self.slides is None) == (self.slides_from is None):
                raise ValueError("give exactly one of slides and slides_from")
            return self

    assert default_problems(Config) == []
    assert default_problems(Choose) == []
