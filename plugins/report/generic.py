"""Any artifact a stage lists in summary.json, shown by its kind: a picture, a table, JSON, a folder.

This is what makes a third-party stage's outputs appear in the report without the report knowing
the stage: list a file with `ctx.add_artifact(path, description)` and it shows here.
"""

from __future__ import annotations

import json
from pathlib import Path

from .html import esc, figure, paragraph, table
from .images import data_uri, is_image
from .rundir import RunInfo, StageInfo
from .tables import csv_block, json_block, json_table

PLOT_SIDE = 1400  # larger pictures are shrunk to this for the page
FOLDER_IMAGES_MAX = 24
JSON_INLINE_BYTES = 200_000  # bigger JSON files are listed, not embedded


def _size(path: Path) -> str:
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file()]
        total = sum(p.stat().st_size for p in files)
        return f"folder, {len(files)} files, {_bytes(total)}"
    return _bytes(path.stat().st_size)


def _bytes(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    value = float(n)
    for unit in ("kB", "MB", "GB"):
        value /= 1000
        if value < 1000 or unit == "GB":
            break
    return f"{value:.1f} {unit}"


def artifacts_section(run: RunInfo, stage: StageInfo, claimed: set[str]) -> str:
    """Pictures in a grid, then tables, JSON and folders, then a list of everything else."""
    pictures, blocks, others = [], [], []
    for rel, description in stage.artifacts.items():
        if rel in claimed:
            continue
        path = run.root / rel
        if not path.exists():
            others.append([rel, description, "missing"])
            continue
        suffix = path.suffix.lower()
        if path.is_file() and is_image(path):
            pictures.append(figure(data_uri(path, PLOT_SIDE), description or rel, alt=rel))
        elif path.is_file() and suffix == ".csv":
            blocks.append(csv_block(path, rel, description or rel))
        elif path.is_file() and suffix == ".json" and path.stat().st_size <= JSON_INLINE_BYTES:
            blocks.append(_json_details(path, rel, description))
        elif path.is_dir() and any(is_image(p) for p in path.iterdir()):
            blocks.append(_image_folder(path, rel, description))
        else:
            others.append([rel, description, _size(path)])
    parts = []
    if pictures:
        parts.append('<div class="plots">' + "".join(pictures) + "</div>")
    parts += blocks
    if others:
        parts.append("<h4>Other outputs</h4>" + table(["path", "description", "size"], others))
    return "".join(parts)


def _json_details(path: Path, rel: str, description: str) -> str:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        return paragraph(f"{rel}: not valid JSON ({exc})", "note error")
    body = json_table(data) or json_block(data)
    return f"<details><summary>{esc(description or rel)} <code>{esc(rel)}</code></summary>{body}</details>"


def _image_folder(path: Path, rel: str, description: str) -> str:
    images = sorted(p for p in path.iterdir() if is_image(p))
    figures = [figure(data_uri(p, 520), p.stem) for p in images[:FOLDER_IMAGES_MAX]]
    html = f'<h4>{esc(description or rel)}</h4><div class="grid">{"".join(figures)}</div>'
    if len(images) > FOLDER_IMAGES_MAX:
        html += paragraph(f"first {FOLDER_IMAGES_MAX} of {len(images)} shown; all are in {rel}/", "note")
    return html
