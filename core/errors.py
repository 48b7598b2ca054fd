"""User-facing errors: the CLI prints their message and exits with their code, never a traceback."""

from __future__ import annotations

from dataclasses import dataclass


class HistoError(Exception):
    """An error caused by the user's input (recipe, files, options), not by a bug in histo."""

    exit_code = 1


class UnknownComponentError(HistoError, KeyError):
    """A name that no registered plugin provides."""

    exit_code = 2

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class UnavailableComponentError(UnknownComponentError):
    """A name that an installed plugin offers but cannot provide (a broken config, a failed hook)."""


class DuplicateComponentError(HistoError):
    """Two plugins registered the same name for one kind."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a recipe, located by its YAML path (and line when known)."""

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = self.path or "<recipe>"
        if self.line is not None:
            where += f" (line {self.line})"
        return f"{where}: {self.message}"


class RecipeError(HistoError):
    """A recipe that does not validate; holds every problem found, not only the first."""

    exit_code = 2

    def __init__(self, problems: list[Problem], source: str = "recipe") -> None:
        self.problems = problems
        self.source = source
        lines = [f"{source}: {len(problems)} problem(s)"] + [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))


class StageFailed(HistoError):
    """A stage could not finish; the run directory records why."""


class SlideError(HistoError):
    """A slide that cannot be used; names the file and what to do."""


class SlideOpenError(SlideError):
    """The file is not a slide any installed reader can open (missing, truncated, unsupported)."""


class SlideReadError(SlideError):
    """The slide opened, but pixels of a region could not be read."""


class MissingMppError(SlideError):
    """The slide does not say how large its pixels are, and no override was given."""
