"""Slide files named by TCGA barcode: which case each belongs to, and which the recipe's choices keep.

Kept: slides whose sample type is in `sample_types` and slide type in `slide_types`. Every slide of a
case that passes is kept (a patient with two diagnostic slides has two rows; the training stage pools
them). A sample sheet, when given, must agree with the file name on the case, and a sheet row whose
slide is not on disk is noted (not downloaded).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from histo.errors import HistoError
from histo.plugins.tiling.inputs import SLIDE_EXTENSIONS

from .barcodes import SLIDE_TYPES, Barcode, parse_barcode, sample_type_name
from .expression import FileNote
from .sample_sheet import SheetEntry


@dataclass(frozen=True)
class SlideFile:
    path: Path
    barcode: Barcode

    @property
    def slide_id(self) -> str:
        """The file name: what GDC calls the slide, and what the cohort table lists."""
        return self.path.name


def scan_slides(
    root: Path,
    sheets: dict[str, SheetEntry],
    sample_types: list[str],
    slide_types: list[str],
    notes: list[FileNote],
) -> dict[str, list[SlideFile]]:
    """Case -> kept slides (sorted by file name); a note for every slide file not kept."""
    if not root.is_dir():
        raise HistoError(f"slides: {root} is not a folder; give the folder the GDC client downloaded into")
    files = sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in SLIDE_EXTENSIONS
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    kept: dict[str, list[SlideFile]] = {}
    seen: dict[str, Path] = {}
    for path in files:
        barcode = parse_barcode(path.name)
        if barcode is None or not barcode.is_slide:
            notes.append(
                FileNote(str(path), "the file name is not a TCGA slide barcode (TCGA-XX-XXXX-01A-01-DX1...)")
            )
            continue
        case = barcode.case_id
        entry = sheets.get(path.name)
        if entry is not None and entry.case_ids and case not in entry.case_ids:
            notes.append(
                FileNote(
                    str(path),
                    f"{entry.where} gives case {', '.join(entry.case_ids)}, the file "
                    f"name says {case}; fix the sheet or the name",
                    case,
                )
            )
            continue
        if path.name in seen:
            notes.append(
                FileNote(str(path), f"the same file name is also at {seen[path.name]}; kept that one", case)
            )
            continue
        code, kind = barcode.sample_type, barcode.slide_type
        if code not in sample_types:
            notes.append(
                FileNote(
                    str(path),
                    f"sample type {code} ({sample_type_name(code)}) is not in sample_types {sample_types}",
                    case,
                )
            )
            continue
        if kind not in slide_types:
            notes.append(
                FileNote(
                    str(path),
                    f"slide type {kind} ({SLIDE_TYPES.get(str(kind), 'unknown')}) is not "
                    f"in slide_types {slide_types}",
                    case,
                )
            )
            continue
        seen[path.name] = path
        kept.setdefault(case, []).append(SlideFile(path, barcode))
    on_disk = {p.name for p in files}
    for name, entry in sheets.items():
        if name in on_disk or "slide" not in entry.data_type.lower():
            continue
        notes.append(
            FileNote(
                name,
                f"listed in {entry.where} but not found below {root} (not downloaded?)",
                entry.case_ids[0] if entry.case_ids else None,
            )
        )
    return kept
