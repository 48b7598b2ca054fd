"""Keeps docs/plugins.md in step with the code plugin authors build on (after datasette's test_docs.py).

Every hookspec in `histo.hookspecs` has a section headed by its name that shows its exact signature;
every hook the page documents exists; every component kind, the environment variables the plugin
manager reads and the pytest fixtures histo ships are all described.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import histo.interfaces
import histo.manager
import histo.testing
from histo import hookspecs
from histo.kinds import KINDS

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass
class Section:
    title: str
    level: int
    lines: list[str]  # body up to the next heading, fences included

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def code_blocks(self) -> list[list[str]]:
        blocks: list[list[str]] = []
        current: list[str] | None = None
        for line in self.lines:
            if FENCE.match(line):
                if current is None:
                    current = []
                else:
                    blocks.append(current)
                    current = None
            elif current is not None:
                current.append(line)
        return blocks


def parse_sections(markdown: str) -> list[Section]:
    """Split markdown at headings, ignoring `#` lines inside fenced code (comments in examples)."""
    sections = [Section("", 0, [])]
    in_code = False
    for line in markdown.splitlines():
        if FENCE.match(line):
            in_code = not in_code
        match = None if in_code else HEADING.match(line)
        if match:
            sections.append(Section(match.group(2).strip("` "), len(match.group(1)), []))
        else:
            sections[-1].lines.append(line)
    return sections


class _Source(str):
    """A postponed (string) annotation, printed as the source text rather than as a quoted string."""

    def __repr__(self) -> str:
        return str(self)


def rendered_signature(function: Callable[..., Any]) -> str:
    """`inspect.signature` as printed, with `from __future__ import annotations` strings unquoted."""
    signature = inspect.signature(function)

    def source(annotation: Any) -> Any:
        return _Source(annotation) if isinstance(annotation, str) else annotation

    parameters = [p.replace(annotation=source(p.annotation)) for p in signature.parameters.values()]
    return str(
        signature.replace(parameters=parameters, return_annotation=source(signature.return_annotation))
    )


def hookspec_functions() -> dict[str, Callable[..., Any]]:
    marker = f"{hookspecs.hookspec.project_name}_spec"  # the attribute pluggy's marker sets
    return {name: fn for name, fn in vars(hookspecs).items() if callable(fn) and hasattr(fn, marker)}


def documented_signature(section: Section) -> str | None:
    """The signature of the first `def <title>(...)` line in the section's code blocks."""
    pattern = re.compile(rf"^\s*def {re.escape(section.title)}(\(.*?)\s*(?::\s*(?:\.\.\.)?)?\s*$")
    for block in section.code_blocks():
        for line in block:
            match = pattern.match(line)
            if match:
                return match.group(1)
    return None


SECTIONS = parse_sections(DOC.read_text(encoding="utf-8")) if DOC.exists() else []
BY_TITLE = {s.title: s for s in SECTIONS}
HOOKS = hookspec_functions()


def test_the_reference_exists_and_hooks_are_found() -> None:
    assert DOC.exists(), f"{DOC} is missing"
    assert len(HOOKS) >= len(KINDS), "the hookspec marker was not recognised"


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_every_hookspec_is_documented_with_its_exact_signature(name: str) -> None:
    section = BY_TITLE.get(name)
    assert section is not None, f"docs/plugins.md has no heading `{name}`"
    expected = rendered_signature(HOOKS[name])
    documented = documented_signature(section)
    assert documented is not None, f"section {name}: no code block with `def {name}{expected}`"
    assert documented == expected, (
        f"section {name}: documented {documented!r}, histo.hookspecs has {expected!r}"
    )


def test_every_documented_hook_exists() -> None:
    documented = {s.title for s in SECTIONS if re.fullmatch(r"histo_\w+", s.title)}
    documented |= set(re.findall(r"^\s*def (histo_\w+)\(", DOC.read_text(encoding="utf-8"), re.MULTILINE))
    unknown = documented - set(HOOKS)
    assert not unknown, f"docs/plugins.md documents hooks that histo.hookspecs lacks: {sorted(unknown)}"


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_every_kind_is_documented_with_its_interface(kind: Any) -> None:
    section = BY_TITLE.get(kind.hook)
    assert section is not None, f"kind {kind.name}: no section `{kind.hook}` in docs/plugins.md"
    assert f"`{kind.name}`" in section.text, f"section {kind.hook} does not name its kind `{kind.name}`"
    interface = f"histo.interfaces.{kind.interface}"
    assert hasattr(histo.interfaces, kind.interface), f"{interface} does not exist"
    assert interface in section.text, f"section {kind.hook} does not name the interface {interface}"


def test_environment_variables_of_the_plugin_manager_are_documented() -> None:
    variables = set(re.findall(r"\"(HISTO_[A-Z_]+)\"", inspect.getsource(histo.manager)))
    assert {"HISTO_PLUGINS", "HISTO_DISABLE_PLUGINS"} <= variables
    text = DOC.read_text(encoding="utf-8")
    assert not [v for v in variables if f"`{v}" not in text]


def fixture_names() -> set[str]:
    names = set()
    for name, obj in vars(histo.testing).items():
        kind = type(obj).__name__
        if kind == "FixtureFunctionDefinition" or hasattr(obj, "_pytestfixturefunction"):
            names.add(name)
    return names


def test_pytest_fixtures_are_documented() -> None:
    fixtures = fixture_names()
    assert {"histo_plugins", "register_plugin", "load_recipe_text"} <= fixtures
    section = next((s for s in SECTIONS if "fixtures" in s.title.lower()), None)
    assert section is not None, "docs/plugins.md has no section about the pytest fixtures"
    missing = [name for name in sorted(fixtures) if f"`{name}`" not in section.text]
    assert not missing, f"fixtures of histo.testing not described in '{section.title}': {missing}"


def test_parser_ignores_comment_lines_in_code_blocks() -> None:
    sections = parse_sections(
        "# Title\n```toml\n# not a heading\n```\n## histo_x\n```python\ndef histo_x() -> int: ...\n```\n"
    )
    assert [s.title for s in sections] == ["", "Title", "histo_x"]
    assert documented_signature(sections[2]) == "() -> int"
