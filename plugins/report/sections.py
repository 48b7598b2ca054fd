"""The run-level parts of the report: heading, findings, stage table with timings, each stage's
section, skipped items, provenance and the resolved recipe."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from .comparison import sentences
from .generic import artifacts_section
from .html import anchor, badge, bar, chips, details, esc, fmt, key_values, paragraph, pre, table
from .known import KNOWN, load_json
from .rundir import RunInfo, StageInfo, read_failures
from .verdict import chance_verdict

FAILURES_MAX = 200  # rows of failures shown per stage
FAILURES_OPEN = 20  # a list this short starts unfolded


def heading(run: RunInfo, title: str) -> str:
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    when = [("started", run.started), ("finished", run.finished)]
    meta = " · ".join(f"{label} {esc(value)}" for label, value in when if value)
    parts = [
        f"<h1>{esc(title)}</h1>",
        f'<p class="meta">run <strong>{esc(run.name)}</strong> {badge(run.status)}'
        f"{' · ' + meta if meta else ''}{' · device ' + esc(run.device) if run.device else ''}</p>",
        f'<p class="meta">run directory <code>{esc(run.root.resolve())}</code> · '
        f"report written {esc(now)}</p>",
    ]
    if run.building and run.status == "running":
        parts.append(
            paragraph(
                f"Written by stage {run.building!r} while the run was still going: stages after it are "
                f"pending here. `histo report {run.root}` rebuilds this page from the finished run.",
                "note",
            )
        )
    return "".join(parts)


def findings(run: RunInfo) -> str:
    """One line per train stage: is its learning above chance? One per compared pair: is it real?"""
    items = []
    for stage in run.stages:
        if stage.status not in ("done", "cached"):
            continue
        for text in sentences(stage):
            items.append(
                f'<p class="verdict"><a href="#{esc(anchor(stage.id))}">{esc(stage.id)}</a>: {esc(text)}</p>'
            )
        metrics = load_json(stage.folder / "metrics.json")
        if not isinstance(metrics, dict) or not isinstance(metrics.get("summary"), dict):
            continue
        verdict = chance_verdict(metrics["summary"])
        if verdict is not None:
            items.append(
                f'<p class="verdict {esc(verdict.level)}"><a href="#{esc(anchor(stage.id))}">'
                f"{esc(stage.id)}</a>: {esc(verdict.text)}</p>"
            )
    return '<section id="findings"><h2>Findings</h2>' + "".join(items) + "</section>" if items else ""


def stage_table(run: RunInfo) -> str:
    longest = max((s.seconds or 0.0 for s in run.stages), default=0.0) or 1.0
    total = sum(s.seconds or 0.0 for s in run.stages if s.status != "cached")
    rows = []
    for stage in run.stages:
        status = stage.status + (f" (from {stage.cached_from})" if stage.cached_from else "")
        rows.append(
            [
                f'<a href="#{esc(anchor(stage.id))}">{esc(stage.id)}</a>',
                stage.plugin,
                badge(status),
                stage.seconds if stage.seconds is not None else "",
                bar((stage.seconds or 0.0) / longest) if stage.seconds is not None else "",
                stage.failures if stage.ran else "",
                stage.error,
            ]
        )
    html = table(
        ["stage", "plugin", "status", "seconds", "time", "skipped items", "error"],
        rows,
        raw_columns=(0, 2, 4),
    )
    note = f"{fmt(total, 3)} s of work in this run (cached stages did not run again)."
    return f'<section id="stages"><h2>Stages</h2>{html}{paragraph(note, "note")}</section>'


def stage_section(run: RunInfo, stage: StageInfo) -> str:
    parts = [
        f'<section id="{esc(anchor(stage.id))}"><h2>Stage {esc(stage.id)} '
        f'<span class="muted">({esc(stage.plugin)})</span> {badge(stage.status)}</h2>'
    ]
    if stage.error:
        parts.append(paragraph(f"Error: {stage.error}", "error"))
    if stage.metrics:
        parts.append(chips((k, _compact(v)) for k, v in stage.metrics.items()))
    if stage.id == run.building:
        parts.append(paragraph("This stage is writing this page.", "note"))
        return "".join(parts) + "</section>"
    if not stage.ran:  # its folder may hold an older run's outputs: they do not describe this run
        parts.append(paragraph("This stage has not run in this run, so nothing of it is shown.", "note"))
        return "".join(parts) + "</section>"
    if not stage.folder.is_dir():
        parts.append(paragraph(f"Its folder {stage.folder} is missing.", "note error"))
        return "".join(parts) + "</section>"
    claimed: set[str] = set()
    for render in KNOWN:
        html, shown = render(run, stage)
        parts.append(html)
        claimed |= shown
    parts.append(artifacts_section(run, stage, claimed))
    parts.append(failures(stage))
    return "".join(parts) + "</section>"


def _compact(value: Any) -> Any:
    return json.dumps(value, default=str) if isinstance(value, dict | list) else value


def failures(stage: StageInfo) -> str:
    records = _unique(read_failures(stage))
    if not records:
        return ""
    rows = []
    for record in records[:FAILURES_MAX]:
        rest = {k: v for k, v in record.items() if k not in ("stage", "item", "reason")}
        rows.append(
            [record.get("item", ""), record.get("reason", ""), json.dumps(rest, default=str) if rest else ""]
        )
    body = table(["item", "reason", "details"], rows)
    if len(records) > FAILURES_MAX:
        body += paragraph(
            f"first {FAILURES_MAX} of {len(records)} shown; all are in {stage.folder / 'failures.jsonl'}",
            "note",
        )
    return details(f"Skipped items ({len(records)})", body, open_=len(records) <= FAILURES_OPEN)


def _unique(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A resumed stage may have recorded the same skip twice; show it once."""
    seen, unique = set(), []
    for record in records:
        key = json.dumps(record, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            unique.append(record)
    return unique


def provenance(run: RunInfo) -> str:
    info = run.provenance
    if not info:
        return '<section id="provenance"><h2>Provenance</h2><p class="note">No provenance.json.</p></section>'
    versions = [
        (k, info.get(k))
        for k in ("histo", "python", "torch", "numpy", "openslide", "openslide_bin", "platform")
    ]
    parts = ['<section id="provenance"><h2>Provenance</h2>', key_values(versions)]
    packages = info.get("plugin_packages")
    if isinstance(packages, dict) and packages:
        parts.append("<h4>Plugin packages</h4>" + table(["package", "version"], list(packages.items())))
    plugins = info.get("plugins")
    if isinstance(plugins, list) and plugins:
        rows = [
            [p.get("name"), p.get("package"), p.get("version"), "yes" if p.get("default") else ""]
            for p in plugins
            if isinstance(p, dict)
        ]
        parts.append(
            details(f"Plugins ({len(rows)})", table(["plugin", "package", "version", "default"], rows))
        )
    command = info.get("command")
    if isinstance(command, list):
        parts.append("<h4>Command</h4>" + pre(" ".join(str(c) for c in command)))
    return "".join(parts) + "</section>"


def recipe(run: RunInfo) -> str:
    if not run.recipe_text:
        return ""
    body = details("resolved recipe (recipe.yaml, every default filled in)", pre(run.recipe_text))
    return f'<section id="recipe"><h2>Recipe</h2>{body}</section>'
