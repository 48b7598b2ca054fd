"""A stage: one step of a recipe. It reads earlier stages' folders and writes its own."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Generic, TypeVar

from pydantic import BaseModel

from ..run.context import StageContext

C = TypeVar("C", bound=BaseModel)


class Stage(ABC, Generic[C]):
    """Constructed by its spec's factory with the validated config; run once per (cache) miss.

    Bump `version` when the stage's outputs change meaning, so finished runs are not reused. A stage
    whose output depends on the whole run rather than on named inputs sets `cacheable = False`.
    Raise `histo.errors.HistoError` for problems the user must fix; call `ctx.record_failure` for
    items that can be skipped while the rest goes on.
    """

    version: ClassVar[str] = "1"
    cacheable: ClassVar[bool] = True  # False: run every time (e.g. a report of the whole run)

    def __init__(self, config: C) -> None:
        self.config = config

    @abstractmethod
    def run(self, ctx: StageContext) -> None: ...

    def check_inputs(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Problems with the stage's external inputs, found before any stage runs (`histo run`,
        `histo validate --inputs`): (key path inside the stage's params, message), every problem at
        once. The default checks that each `InputPath` exists; override it to also parse tables and
        match their columns and ids. Skip inputs that an earlier stage writes: they are not there yet.
        """
        from ..run.preflight import missing_paths

        return missing_paths(self.config)


__all__ = ["Stage", "StageContext"]
