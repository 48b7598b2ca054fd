"""Run a recipe given as text in-process, as `histo run` would, and return the run's summary."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ..manager import Plugins


def run_recipe_text(
    yaml_text: str,
    out_dir: Path | str,
    overrides: list[str] | None = None,
    *,
    check: bool = True,
    plugins: Plugins | None = None,
) -> dict[str, Any]:
    """Validate and run `yaml_text` into `out_dir` with the process-wide plugins (those of the
    `histo_plugins` / `register_plugin` fixtures in a test) and return `summary.json`'s content.

    `overrides` are `--set` items (`"stages.train.params.training.epochs=1"`). With `check`, a run that
    does not finish raises AssertionError with each failed stage's error; relative paths in the recipe
    are relative to the working directory, as for `histo run`.
    """
    from ..recipe import load_recipe
    from ..run import run_recipe

    out = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="histo-recipe-") as tmp:
        source = Path(tmp) / f"{out.name or 'run'}.yaml"
        source.write_text(yaml_text, encoding="utf-8")
        loaded = load_recipe(source, overrides, plugins=plugins)
        result = run_recipe(loaded, out, plugins=plugins, quiet=True, argv=["histo.testing.run_recipe_text"])
    summary = result.summary
    if check and not result.ok:
        failed = [
            f"{stage['id']}: {stage.get('error', stage['status'])}"
            for stage in summary["stages"]
            if stage["status"] not in ("done", "cached")
        ]
        raise AssertionError(
            f"run {out} ended {summary['status']}: " + "; ".join(failed) + f" (log: {out / 'histo.log'})"
        )
    return summary
