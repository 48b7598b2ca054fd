"""The input preflight: every stage's external inputs checked before any stage runs.

A missing table or a misspelt column used to surface at the stage that needed it, after earlier
stages had run for minutes, and one at a time. `histo run` and `histo validate --inputs` call
`preflight`, which asks each stage for all its problems (`Stage.check_inputs`) and reports them
together with their YAML paths.
"""

from __future__ import annotations

import logging
import traceback
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from ..errors import Problem, RecipeError
from ..recipe.loader import LoadedRecipe
from ..recipe.locate import Loc, dotted, line_of, yaml_lines
from ..recipe.walk import walk

log = logging.getLogger("histo")
# the run directory being checked for: paths inside it are written by the run itself, not inputs yet
_RUN_DIR: ContextVar[Path | None] = ContextVar("histo_preflight_run_dir", default=None)


class InputsError(RecipeError):
    """A valid recipe whose input files are missing, unreadable or do not fit together; nothing ran."""

    exit_code = 1


def missing_paths(config: Any, skip_relative: bool = False) -> list[tuple[Loc, str]]:
    """(key path, message) for each `InputPath` of `config` that does not exist.

    `skip_relative`: relative paths are read from an earlier stage's folder, which does not exist yet.
    """
    problems: list[tuple[Loc, str]] = []
    run_dir = _RUN_DIR.get()
    for what, loc, value in walk(config):
        if what != "path" or not isinstance(value, Path):
            continue
        try:
            if value.exists():
                continue
        except (OSError, ValueError) as exc:  # a NUL byte, a name too long
            problems.append((loc, f"{value!s:.80} is not a usable path ({exc}); fix the path"))
            continue
        if skip_relative and not value.is_absolute():
            continue
        if run_dir is not None and value.resolve().is_relative_to(run_dir.resolve()):
            continue
        where = "" if value.is_absolute() else f" (relative to the current folder {Path.cwd()})"
        problems.append((loc, f"{value} does not exist{where}; fix the path"))
    return problems


def preflight(loaded: LoadedRecipe, run_dir: Path | None = None) -> list[Problem]:
    """Every problem with the inputs of every stage of `loaded`, with YAML paths and lines.

    Paths inside `run_dir` (default runs/<name>) are outputs of the run's own stages: not checked.
    """
    token = _RUN_DIR.set(run_dir if run_dir is not None else Path("runs") / loaded.name)
    try:
        return _preflight(loaded)
    finally:
        _RUN_DIR.reset(token)


def _preflight(loaded: LoadedRecipe) -> list[Problem]:
    lines = yaml_lines(loaded.source.read_text(encoding="utf-8")) if loaded.source else {}
    problems: list[Problem] = []
    for stage in loaded.stages:
        instance = stage.entry.spec.factory(stage.config)
        check = getattr(instance, "check_inputs", None)
        if check is None:  # a stage that is not a histo.interfaces.Stage: the paths at least
            found: list[tuple[Loc, str]] = missing_paths(stage.config)
        else:
            try:
                found = list(check())
            except Exception as exc:  # a bug in a check must not block the run: the stage still checks
                log.debug("%s", traceback.format_exc())
                log.warning("%s: input check skipped (%s: %s)", stage.id, type(exc).__name__, exc)
                continue
        for loc, message in found:
            at: Loc = ("stages", stage.id, "params", *loc)
            problems.append(Problem(dotted(at), message, line_of(lines, at)))
    return problems


def check_inputs_or_raise(loaded: LoadedRecipe, run_dir: Path | None = None) -> None:
    problems = preflight(loaded, run_dir)
    if problems:
        label = f"inputs of {loaded.source}" if loaded.source else "inputs"
        raise InputsError(problems, label)
