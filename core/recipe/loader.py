"""Loads a recipe: YAML (safe loader), `--set` overrides, then two validation phases.

Every problem is collected with its YAML path and line, so a user fixes a recipe in one pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import HistoError, Problem, RecipeError
from ..manager import Plugins, get_plugins
from ..registry import Registered
from .bounds import out_of_bounds
from .locate import Loc, dotted, line_of, problems_from, yaml_lines
from .model import Recipe
from .walk import walk

STAGE_ID = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass
class ResolvedStage:
    id: str
    entry: Registered[Any]  # the stage plugin
    config: BaseModel  # its validated config

    @property
    def upstream(self) -> list[str]:
        return [value for what, _, value in walk(self.config) if what == "stage"]

    @property
    def input_paths(self) -> list[Path]:
        return [value for what, _, value in walk(self.config) if what == "path"]

    @property
    def component_sources(self) -> list[list[str]]:
        """(kind, name, package, version[, source digest]) of every component the stage uses: an
        upgraded plugin package, or an edited editable one, invalidates the stages that use it."""
        return [
            [value.kind, value.name, *(value._source or ("", ""))]
            for what, _, value in walk(self.config)
            if what == "component"
        ]

    @property
    def components(self) -> list[tuple[str, str, str, str]]:
        """(kind, name, package, version) of every component the stage uses, for error messages."""
        found = []
        for what, _, value in walk(self.config):
            if what == "component":
                package, version = (value._source or ("", ""))[:2]
                found.append((value.kind, value.name, package, version))
        return found


@dataclass
class LoadedRecipe:
    recipe: Recipe
    stages: list[ResolvedStage]
    source: Path | None
    overrides: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        if self.recipe.name:
            return self.recipe.name
        return self.source.stem if self.source else "run"

    def resolved(self) -> dict[str, Any]:
        """The recipe with every default filled in: what the run actually used."""
        data = self.recipe.model_dump(mode="json")
        data["name"] = self.name
        for stage in self.stages:
            data["stages"][stage.id]["params"] = stage.config.model_dump(mode="json")
        return data


def parse_overrides(items: list[str]) -> list[tuple[Loc, Any]]:
    """`a.b.c=value` -> ((a, b, c), value); values are parsed as YAML (numbers, lists, booleans)."""
    parsed: list[tuple[Loc, Any]] = []
    problems = []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            problems.append(
                Problem(f"--set {item}", "expected KEY.PATH=VALUE, e.g. stages.train.params.epochs=5")
            )
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            problems.append(Problem(f"--set {item}", f"value is not valid YAML: {exc}"))
            continue
        loc: Loc = tuple(int(p) if p.isdigit() else p for p in key.strip().split("."))
        parsed.append((loc, value))
    if problems:
        raise RecipeError(problems, source="--set")
    return parsed


def _apply_override(data: dict[str, Any], loc: Loc, value: Any) -> Problem | None:
    node: Any = data
    for i, part in enumerate(loc[:-1]):
        if isinstance(node, dict):
            node = node.setdefault(part, {})
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return Problem(
                dotted(loc), f"--set cannot descend into {dotted(loc[: i + 1])}: it is not a mapping"
            )
    last = loc[-1]
    if isinstance(node, list) and isinstance(last, int) and last < len(node):
        node[last] = value
        return None
    if isinstance(node, dict):
        node[last] = value
        return None
    return Problem(dotted(loc), "--set target is not a mapping key or an existing list item")


class _UniqueKeyLoader(yaml.SafeLoader):
    """The safe loader, refusing a key written twice in one mapping (YAML would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may be overridden: not a repeat
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base loader reports it
                break
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice (lines {first} and {line}); keep one",
                    key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _read(path: Path) -> tuple[dict[str, Any], dict[Loc, int]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(
            [Problem("", f"cannot read recipe: {exc.strerror or exc}")], source=str(path)
        ) from None
    except UnicodeDecodeError as exc:
        bad_line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise RecipeError(
            [Problem("", f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x}); save it as UTF-8", bad_line)],
            source=str(path),
        ) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError([Problem("", f"not valid YAML: {problem}", line)], source=str(path)) from None
    if not isinstance(data, dict):
        raise RecipeError(
            [Problem("", "a recipe is a YAML mapping with at least a `stages:` key")], str(path)
        )
    return data, yaml_lines(text)


def load_recipe(
    source: Path | str | dict[str, Any], overrides: list[str] | None = None, plugins: Plugins | None = None
) -> LoadedRecipe:
    """Read, override and validate a recipe; raise RecipeError listing every problem."""
    plugins = plugins or get_plugins()
    overrides = overrides or []
    if isinstance(source, dict):
        data, path, label = dict(source), None, "recipe"
        lines: dict[Loc, int] = {}
    else:
        path = Path(source)
        data, lines = _read(path)
        label = str(path)

    problems: list[Problem] = []
    for loc, value in parse_overrides(overrides):
        problem = _apply_override(data, loc, value)
        if problem:
            problems.append(problem)
        lines.pop(loc, None)

    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(problems + problems_from(exc, Recipe, (), lines), label) from None

    stages: list[ResolvedStage] = []
    seen: list[str] = []
    digests: dict[Any, str] = {}  # source digests, once per plugin package and recipe load
    registry = plugins.registry("stages")
    for stage_id, entry in recipe.stages.items():
        at: Loc = ("stages", stage_id)
        if not STAGE_ID.match(stage_id):
            problems.append(
                Problem(
                    dotted(at), "stage ids are lowercase letters, digits, '-' and '_'", line_of(lines, at)
                )
            )
        try:
            registered = registry.get(entry.stage)
        except HistoError as exc:
            problems.append(Problem(dotted((*at, "stage")), str(exc), line_of(lines, (*at, "stage"))))
            seen.append(stage_id)
            continue
        config_model = registered.spec.config
        try:
            config = config_model.model_validate(entry.params)
        except ValidationError as exc:
            problems += problems_from(exc, config_model, (*at, "params"), lines)
            seen.append(stage_id)
            continue
        problems += _validate_references(config, (*at, "params"), seen, plugins, lines, digests)
        problems += _bound_problems(config, (*at, "params"), lines)
        stages.append(ResolvedStage(stage_id, registered, config))
        seen.append(stage_id)

    if problems:
        raise RecipeError(problems, label)
    return LoadedRecipe(recipe, stages, path, list(overrides))


def _bound_problems(config: BaseModel, prefix: Loc, lines: dict[Loc, int]) -> list[Problem]:
    found = out_of_bounds(config, prefix)
    return [Problem(dotted(loc), message, line_of(lines, loc)) for loc, message in found]


def resolve_config(
    model: type[BaseModel], data: Any, plugins: Plugins | None = None, label: str = "config"
) -> Any:
    """Validate `data` against `model` and resolve the component refs inside it, outside a recipe
    (e.g. rebuilding a trained model from the config saved beside its checkpoint)."""
    plugins = plugins or get_plugins()
    try:
        config = model.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(problems_from(exc, model, (), {}), label) from None
    problems = _validate_references(config, (), None, plugins, {})
    if problems:
        raise RecipeError(problems, label)
    return config


def _validate_references(
    config: BaseModel,
    prefix: Loc,
    earlier: list[str] | None,
    plugins: Plugins,
    lines: dict[Loc, int],
    digests: dict[Any, str] | None = None,
) -> list[Problem]:
    """Phase two inside one stage: component names and params, upstream stage ids (unless `earlier`
    is None: a config saved by a finished run names stages of that run)."""
    problems: list[Problem] = []
    # walk() descends into a component's config right after yielding it, so nested components
    # are reached once their parent has been validated here.
    for what, loc, value in walk(config, prefix):
        if what == "stage" and earlier is not None and value not in earlier:
            message = f"no earlier stage {value!r}"
            message += f"; earlier stages: {', '.join(earlier)}" if earlier else "; this is the first stage"
            problems.append(Problem(dotted(loc), message, line_of(lines, loc)))
        elif what == "component" and value._config is None:
            try:
                entry = plugins.registry(value.kind).get(value.name)
                spec = entry.spec
            except HistoError as exc:
                problems.append(Problem(dotted((*loc, "name")), str(exc), line_of(lines, (*loc, "name"))))
                continue
            try:
                value._config = spec.config.model_validate(value.params)
            except ValidationError as exc:
                problems += problems_from(exc, spec.config, (*loc, "params"), lines)
                continue
            value._spec = spec
            digest = plugins.source_digest(entry, digests)
            value._source = (entry.package, entry.version, *([digest] if digest else []))
            value.params = value._config.model_dump(mode="json")
    return problems
