"""What hashing editable plugins' source costs `histo validate` / `histo run` before any stage runs.

Measured in one process, back to back, --repeats times (best of each):

  baseline   load_recipe of a recipe naming components of editable/local plugins, with source
             hashing switched off (every digest '')
  cold       the same with hashing on and an empty per-file digest cache (a fresh `histo run`)
  warm       again with the cache filled (a second recipe load in the same process)

It prints milliseconds and cold / baseline, warm / baseline. The recipe names `--refs` components
of a generated editable-style plugin package of `--files` .py files of `--kb` KiB each.

usage: python benchmarks/source_digest.py [--files 40] [--kb 8] [--refs 6] [--repeats 5]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
from pathlib import Path

import histo.sources as sources
from histo.manager import Plugins
from histo.recipe import load_recipe

PLUGIN = '''
from pydantic import BaseModel, ConfigDict
from histo import ComponentSpec, hookimpl
from histo.interfaces import Stage


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    k: int = 1


class UseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    parts: list[TokenAggregatorRef] = []


class Use(Stage[UseConfig]):
    def run(self, ctx):
        pass


@hookimpl
def histo_token_aggregators():
    return [ComponentSpec(f"bench_{i}", lambda c: c, Config) for i in range(REFS)]


@hookimpl
def histo_stages():
    return [ComponentSpec("bench_use", Use, UseConfig)]
'''


def make_package(root: Path, files: int, kb: int, refs: int) -> Path:
    package = root / "histo_bench_plugin"
    package.mkdir(parents=True)
    header = f"from histo.recipe import TokenAggregatorRef\nREFS = {refs}\n"
    (package / "__init__.py").write_text(header + PLUGIN)
    filler = "# " + "x" * 78 + "\n"
    for i in range(files - 1):
        (package / f"module_{i}.py").write_text(filler * (kb * 1024 // len(filler)))
    return package


def timed(fn: object, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--kb", type=int, default=8)
    parser.add_argument("--refs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        make_package(Path(tmp), args.files, args.kb, args.refs)
        sys.path.insert(0, tmp)
        module = importlib.import_module("histo_bench_plugin")
        plugins = Plugins(load_entry_points=False, env={})
        plugins.register(module, "bench", package="histo-bench-plugin-local")
        parts = ", ".join(f"bench_{i}" for i in range(args.refs))
        recipe = Path(tmp) / "recipe.yaml"
        recipe.write_text(f"stages:\n  use:\n    stage: bench_use\n    params: {{parts: [{parts}]}}\n")
        plugins.registries()  # collect once, outside the timings

        def load() -> None:
            load_recipe(recipe, plugins=plugins)

        def cold() -> None:
            sources._file_digests.clear()
            load()

        real = sources.tree_digest
        sources.tree_digest = lambda top: ""  # type: ignore[assignment]
        baseline = timed(load, args.repeats)
        sources.tree_digest = real  # type: ignore[assignment]
        cold_ms = timed(cold, args.repeats)
        load()
        warm_ms = timed(load, args.repeats)
    print(f"plugin: {args.files} .py files x {args.kb} KiB, {args.refs} component refs in the recipe")
    print(f"baseline (no hashing) {baseline:8.2f} ms")
    print(f"cold cache            {cold_ms:8.2f} ms   cold / baseline = {cold_ms / baseline:.2f}")
    print(f"warm cache            {warm_ms:8.2f} ms   warm / baseline = {warm_ms / baseline:.2f}")


if __name__ == "__main__":
    main()
