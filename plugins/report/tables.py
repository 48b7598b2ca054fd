"""CSV and JSON tables as HTML, capped so a cohort-sized file never swamps the page."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .html import details, esc, paragraph, table

FULL_ROWS = 50  # a CSV up to this many rows is shown whole
HEAD_ROWS = 20  # of a bigger one, the first rows
MAX_COLUMNS = 40
OPEN_ROWS = 12  # a CSV artifact with more rows starts folded


def _number(text: str) -> Any:
    """CSV cells that look like numbers become numbers (formatted and right-aligned)."""
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def _read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        return list(csv.reader(fh))


def csv_table(path: Path, relative: str) -> str:
    """The CSV as a table: whole up to FULL_ROWS rows, else its first HEAD_ROWS and a note."""
    try:
        rows = _read_csv(path)
    except OSError as exc:
        return paragraph(f"{relative}: cannot be read ({exc})", "note error")
    return _table_of(rows, relative)


def csv_block(path: Path, relative: str, title: str) -> str:
    """A CSV artifact under its title; a long one starts folded, so the page stays readable."""
    try:
        rows = _read_csv(path)
    except OSError as exc:
        return paragraph(f"{relative}: cannot be read ({exc})", "note error")
    count = max(len(rows) - 1, 0)
    if count <= OPEN_ROWS:
        return f"<h4>{esc(title)}</h4>{_table_of(rows, relative)}"
    columns = len(rows[0]) if rows else 0
    summary = f"{title} ({count} rows, {columns} columns)"
    return details(summary, _table_of(rows, relative))


def _table_of(rows: list[list[str]], relative: str) -> str:
    if not rows:
        return paragraph(f"{relative}: empty", "note")
    header, body = rows[0], rows[1:]
    keep = _without_parts(header)
    if len(keep) < len(header):
        header, body = [header[i] for i in keep], [[r[i] if i < len(r) else "" for i in keep] for r in body]
    notes = []
    shown = body if len(body) <= FULL_ROWS else body[:HEAD_ROWS]
    if len(shown) < len(body):
        notes.append(f"first {len(shown)} of {len(body)} rows")
    if len(header) > MAX_COLUMNS:
        notes.append(f"first {MAX_COLUMNS} of {len(header)} columns")
        header, shown = header[:MAX_COLUMNS], [r[:MAX_COLUMNS] for r in shown]
    html = table(header, [[_number(c) for c in r] for r in shown])
    if notes:
        html += paragraph(f"{'; '.join(notes)} shown; the whole table is {relative}", "note")
    return html


def _without_parts(header: list[str]) -> list[int]:
    """Column indices to show: `x_mean` and `x_std` are left out when a column `x` holds "mean ± std"
    (the compare stage's tables), which halves the width of a metrics table and loses nothing."""
    names = set(header)
    return [
        i
        for i, name in enumerate(header)
        if not any(
            name == f"{base}{suffix}" and base in names for base in names for suffix in ("_mean", "_std")
        )
    ]


def records_table(records: Sequence[dict[str, Any]], limit: int = 200) -> str:
    """A list of flat-ish dicts as a table; nested values are shown as compact JSON."""
    columns: list[str] = []
    for record in records:
        columns += [k for k in record if k not in columns]
    rows = [[_cell(r.get(c)) for c in columns] for r in records[:limit]]
    html = table(columns, rows)
    if len(records) > limit:
        html += paragraph(f"first {limit} of {len(records)} rows shown", "note")
    return html


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=str)
    return value


def json_table(data: Any) -> str | None:
    """A JSON value that is naturally a table (a list of objects, or an object of objects), or None."""
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        return records_table(data)
    if isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()):
        return records_table([{"": k, **v} for k, v in data.items()])
    return None


def json_block(data: Any, limit: int = 20_000) -> str:
    text = json.dumps(data, indent=2, default=str)
    if len(text) > limit:
        text = text[:limit] + f"\n... ({len(text) - limit} more characters)"
    return f"<pre>{esc(text)}</pre>"
