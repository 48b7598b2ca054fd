"""`build_report(run_dir)`: the run directory as one self-contained HTML page (report.html)."""

from __future__ import annotations

from pathlib import Path

from histo.io import write_text_atomic

from . import sections
from .html import anchor, document
from .rundir import load_run


def build_report(
    run_dir: Path | str,
    out: Path | str | None = None,
    *,
    title: str | None = None,
    building: str | None = None,
) -> Path:
    """Write the report of `run_dir` to `out` (default `<run_dir>/report.html`), atomically.

    `building` is the id of the stage writing it from inside a run that is still going.
    """
    run = load_run(run_dir, building=building)
    page_title = title or f"histo run report: {run.name}"
    toc = [("findings", "Findings")] if (body_findings := sections.findings(run)) else []
    toc += [("stages", "Stages")]
    toc += [(anchor(s.id), s.id) for s in run.stages]
    toc += [("provenance", "Provenance"), ("recipe", "Recipe")]
    parts = [body_findings, sections.stage_table(run)]
    parts += [sections.stage_section(run, stage) for stage in run.stages]
    parts += [sections.provenance(run), sections.recipe(run)]
    html = document(page_title, sections.heading(run, page_title), toc, [p for p in parts if p])
    target = Path(out) if out is not None else run.root / "report.html"
    write_text_atomic(target, html)
    return target
