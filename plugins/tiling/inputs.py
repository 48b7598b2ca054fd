"""The tile stage's inputs: which slide files to tile, and the per-slide mpp overrides."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from histo.errors import HistoError
from histo.interfaces import SlideReader
from histo.plugins.readers import OPENSLIDE_EXTENSIONS
from histo.plugins.readers.dicom_series import DICOM_SUFFIX

SLIDE_EXTENSIONS = OPENSLIDE_EXTENSIONS  # for readers that declare no extensions of their own


def slide_extensions(configured: Sequence[str] | None, reader: SlideReader) -> list[str]:
    """The recipe's `extensions`, else what the reader itself opens (else the whole-slide formats):
    a folder of PNGs is found with `reader: image` alone."""
    if configured:
        return list(configured)
    return list(reader.extensions or SLIDE_EXTENSIONS)


def slide_id(path: Path) -> str:
    """A slide's id: its file name without the extension (as CLAM and TRIDENT name outputs), or the
    folder's name for a DICOM series (a folder of `.dcm` instance files)."""
    return path.name if path.is_dir() else path.stem


def find_slides(root: Path, extensions: Iterable[str]) -> list[Path]:
    """`root` itself if it is a file, else every file below it with one of `extensions` (sorted).

    `.dcm` files stand for the folder that holds them: a DICOM series is one slide, whatever the number
    of its instance files. Hidden files and folders are skipped (temporary copies, `.partial` files);
    two slides with the same slide id are an error, since their outputs would overwrite each other.
    """
    if root.is_file():
        return [root.parent if root.suffix.lower() == DICOM_SUFFIX else root]
    if not root.is_dir():
        raise HistoError(f"slides: {root} does not exist; give a slide file or a folder of slides")
    wanted = {e.lower() for e in extensions}
    found = sorted(
        {
            path.parent if path.suffix.lower() == DICOM_SUFFIX else path
            for path in root.rglob("*")
            if path.suffix.lower() in wanted
            and not any(part.startswith(".") for part in path.relative_to(root).parts)
            and path.is_file()
        }
    )
    if not found:
        raise HistoError(
            f"slides: no file with extension {', '.join(sorted(wanted))} below {root}; "
            "check the folder, or set `extensions`"
        )
    by_id: dict[str, list[Path]] = {}
    for path in found:
        by_id.setdefault(slide_id(path), []).append(path)
    clashes = {sid: paths for sid, paths in by_id.items() if len(paths) > 1}
    if clashes:
        listing = "; ".join(f"{sid}: {', '.join(map(str, paths))}" for sid, paths in sorted(clashes.items()))
        raise HistoError(
            f"slides below {root} share slide ids (file name without extension), so their outputs would "
            f"collide: {listing}. Rename or move all but one of each."
        )
    return found


def read_mpp_csv(path: Path) -> dict[str, float]:
    """`slide_id,mpp` rows; every bad row is reported at once, by file and line number."""
    if not path.is_file():
        raise HistoError(f"mpp_csv: {path} does not exist; it should be a CSV with columns slide_id, mpp")
    with path.open(newline="", encoding="utf-8-sig") as fh:
        rows = csv.DictReader(fh)
        columns = [c.strip() for c in rows.fieldnames or []]
        if "slide_id" not in columns or "mpp" not in columns:
            raise HistoError(
                f"mpp_csv {path}: the header must name the columns slide_id and mpp; found {columns}"
            )
        rows.fieldnames = columns
        values: dict[str, float] = {}
        problems: list[str] = []
        for line, row in enumerate(rows, start=2):
            sid, raw = (row.get("slide_id") or "").strip(), (row.get("mpp") or "").strip()
            if not sid and not raw:
                continue  # blank line
            if not sid:
                problems.append(f"row {line}: slide_id is empty")
                continue
            try:
                value = float(raw)
            except ValueError:
                problems.append(f"row {line} ({sid}): mpp {raw!r} is not a number")
                continue
            if not (math.isfinite(value) and value > 0):
                problems.append(f"row {line} ({sid}): mpp must be a positive number of microns, got {raw}")
            elif sid in values and values[sid] != value:
                problems.append(f"row {line} ({sid}): a second, different mpp ({values[sid]:g} before)")
            else:
                values[sid] = value
    if problems:
        raise HistoError(f"mpp_csv {path}: {len(problems)} bad row(s): " + "; ".join(problems))
    return values


def merge_overrides(from_csv: Mapping[str, float], from_recipe: Mapping[str, float]) -> dict[str, float]:
    """The recipe's `mpp_overrides` win over the CSV: they are the more specific, later decision."""
    return {**from_csv, **from_recipe}
