"""Every ```python block of the plugin docs runs, so the pages cannot drift from the code again.

The blocks of a page run in order, the way a reader copies them:
- a block whose first line is a file comment (`# src/histo_lab/mil.py`) becomes that module
  (`histo_lab.mil`), importable by later blocks, as it would be in the reader's package;
- any other block runs in one namespace shared by the page's blocks;
- then every `test_*` function the blocks define is called, with histo's pytest fixtures
  (`histo_plugins`, `register_plugin`, `load_recipe_text`, `histo_dims`, ...) and `tmp_path`, each
  with a fresh plugin manager, as pytest would.
A block that shows part of a real file is fenced as ```python excerpt=PATH (PATH from the repository
root): each of its lines must appear in that file, in order (`...` in a line stands for anything), so
an excerpt cannot drift from the code either. A block that cannot run on its own (a shape, a
signature) is fenced as ```python fragment; keep those rare. Tracebacks point at the page's own line
numbers.
"""

from __future__ import annotations
import __future__

import inspect
import re
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from histo import manager
from histo.manager import Plugins, set_plugins

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "docs" / "plugins.md", ROOT / "docs" / "plugin-tutorial.md"]
FENCE = re.compile(r"^(\s*)(```|~~~)\s*([\w+-]*)\s*(.*?)\s*$")
MODULE_FILE = re.compile(r"^#\s*(?:src/)?((?:[A-Za-z_]\w*/)*[A-Za-z_]\w*)\.py\s*$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the first code line
    code: str
    flags: tuple[str, ...]

    @property
    def excerpt_of(self) -> Path | None:
        for flag in self.flags:
            if flag.startswith("excerpt="):
                return ROOT / flag.removeprefix("excerpt=")
        return None

    @property
    def module(self) -> str | None:
        first = self.code.lstrip("\n").splitlines()[0] if self.code.strip() else ""
        match = MODULE_FILE.match(first.strip())
        return match.group(1).replace("/", ".") if match else None


def python_blocks(page: Path) -> list[Block]:
    blocks: list[Block] = []
    open_fence: tuple[str, str, tuple[str, ...], int] | None = None
    lines: list[str] = []
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
        match = FENCE.match(line)
        if open_fence is None:
            if match:
                open_fence = (match.group(2), match.group(3), tuple(match.group(4).split()), number + 1)
                lines = []
        elif match and match.group(2) == open_fence[0] and not match.group(3):
            _, language, flags, start = open_fence
            indent = min((len(x) - len(x.lstrip()) for x in lines if x.strip()), default=0)
            if language == "python":
                blocks.append(Block(page, start, "\n".join(x[indent:] for x in lines), flags))
            open_fence = None
        else:
            lines.append(line)
    return blocks


class _Fixtures:
    """The fixtures histo.testing provides, for one test function, with its own plugin manager."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.plugins = Plugins(load_entry_points=False, env={})

    def provide(self, name: str) -> Any:
        from histo import testing

        plugins = self.plugins
        providers: dict[str, Callable[[], Any]] = {
            "tmp_path": lambda: self.tmp_path,
            "histo_plugins": lambda: plugins,
            "register_plugin": lambda: (
                lambda plugin, name=None, package="<test>": (
                    plugins.register(plugin, name, package=package),
                    plugins,
                )[1]
            ),
            "load_recipe_text": lambda: self._load_recipe_text,
            "histo_dims": testing.model_dims,
            "histo_batch": lambda: testing.synthetic_batch(testing.model_dims()),
            "histo_cohort": lambda: testing.tiny_cohort(self.tmp_path / "cohort"),
            "histo_slide": lambda: testing.small_slide(self.tmp_path / "slide.tif"),
        }
        if name not in providers:
            raise AssertionError(f"a documented test asks for fixture {name!r}, which histo.testing lacks")
        return providers[name]()

    def _load_recipe_text(self, text: str, overrides: list[str] | None = None) -> Any:
        from histo.recipe import load_recipe

        path = self.tmp_path / "recipe.yaml"
        path.write_text(text, encoding="utf-8")
        return load_recipe(path, overrides, plugins=self.plugins)


def _register_module(name: str, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A fresh module `name` (and its parent packages) in sys.modules for the test's duration."""
    parts = name.split(".")
    for depth in range(1, len(parts)):
        parent = ".".join(parts[:depth])
        if parent not in sys.modules or not hasattr(sys.modules[parent], "__path__"):
            package = types.ModuleType(parent)
            package.__path__ = []
            monkeypatch.setitem(sys.modules, parent, package)
    module = types.ModuleType(name)
    monkeypatch.setitem(sys.modules, name, module)
    if len(parts) > 1:
        monkeypatch.setattr(sys.modules[".".join(parts[:-1])], parts[-1], module, raising=False)
    return module


def _run(block: Block, namespace: dict[str, Any]) -> None:
    source = "\n" * (block.line - 1) + block.code  # tracebacks show the page's line numbers
    relative = block.page.relative_to(ROOT)
    code = compile(
        source, str(relative), "exec", flags=__future__.annotations.compiler_flag, dont_inherit=True
    )
    exec(code, namespace)


def _tests(namespaces: list[dict[str, Any]]) -> Iterator[tuple[str, Callable[..., Any]]]:
    for namespace in namespaces:
        for name, value in list(namespace.items()):
            if name.startswith("test_") and inspect.isfunction(value):
                yield name, value


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_python_block_runs(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = python_blocks(page)
    assert blocks, f"{page} has no python blocks"
    shared = _register_module(f"docs_{page.stem.replace('-', '_')}", monkeypatch).__dict__
    namespaces = [shared]
    previous = manager._default
    try:
        for block in blocks:
            if "fragment" in block.flags or block.excerpt_of is not None:
                continue
            set_plugins(Plugins(load_entry_points=False, env={}))
            target = shared if block.module is None else _register_module(block.module, monkeypatch).__dict__
            if target is not shared:
                namespaces.append(target)
            _run(block, target)
        for index, (name, test) in enumerate(_tests(namespaces)):
            fixtures = _Fixtures(tmp_path / f"{index}-{name}")
            fixtures.tmp_path.mkdir()
            set_plugins(fixtures.plugins)
            test(**{arg: fixtures.provide(arg) for arg in inspect.signature(test).parameters})
    finally:
        set_plugins(previous)


def excerpt_problem(block: Block) -> str | None:
    """Why `block` is not an excerpt of its file (None when every line is found, in order)."""
    path = block.excerpt_of
    assert path is not None
    if not path.is_file():
        return f"{path} does not exist"
    source = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    position = 0
    for offset, line in enumerate(block.code.splitlines()):
        wanted = line.strip()
        if not wanted or wanted == "...":
            continue
        pattern = re.compile(".*".join(re.escape(part) for part in wanted.split("...")) + "$")
        found = next((i for i in range(position, len(source)) if pattern.match(source[i])), None)
        if found is None:
            return f"line {block.line + offset} ({wanted!r}) is not in {path.name} after line {position}"
        position = found + 1
    return None


EXCERPTS = [b for page in PAGES for b in python_blocks(page) if b.excerpt_of is not None]


@pytest.mark.parametrize("block", EXCERPTS, ids=[f"{b.page.name}:{b.line}" for b in EXCERPTS])
def test_excerpts_match_their_files(block: Block) -> None:
    problem = excerpt_problem(block)
    assert problem is None, f"{block.page.name}, block at line {block.line}: {problem}"


def test_fragments_are_rare() -> None:
    """A fragment is a block nobody runs: only shapes and signatures may be one."""
    for page in PAGES:
        blocks = python_blocks(page)
        fragments = [b for b in blocks if "fragment" in b.flags]
        assert len(fragments) <= len(blocks) // 4, (
            f"{page.name}: {len(fragments)} of {len(blocks)} are fragments"
        )


def test_parser_finds_blocks_modules_and_flags(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n```python\n# src/pkg/mod.py\nx = 1\n```\n\n- item\n\n  ```python fragment\n  y\n  ```\n"
        "```toml\n# pyproject.toml\n```\n"
    )
    blocks = python_blocks(page)
    assert [(b.line, b.module, b.flags) for b in blocks] == [(3, "pkg.mod", ()), (10, None, ("fragment",))]
    assert blocks[1].code == "y"


def test_an_excerpt_that_drifted_is_reported(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text("def f(x):\n    y = compute(x, scale=2)\n    return y\n")
    ok = Block(tmp_path / "p.md", 5, "def f(x):\n    y = compute(x, ...)\n    ...\n", (f"excerpt={source}",))
    assert excerpt_problem(ok) is None
    drifted = Block(tmp_path / "p.md", 5, "def f(x):\n    return x\n", (f"excerpt={source}",))
    assert "line 6 ('return x') is not in mod.py" in str(excerpt_problem(drifted))
    reordered = Block(tmp_path / "p.md", 5, "    return y\ndef f(x):\n", (f"excerpt={source}",))
    assert excerpt_problem(reordered) is not None
