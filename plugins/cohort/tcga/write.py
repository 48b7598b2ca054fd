"""Writing a matched TCGA cohort as histo's cohort tables, atomically, plus links to its slides."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from histo.io import atomic_path, write_json_atomic

from .build import TcgaCohort

OUTPUTS = {
    "cohort.csv": "one row per slide of each matched case: patient_id, slide_id, time, event, site, ...",
    "omics.csv": "expression of each matched case (patient_id + genes), in the recorded scale",
    "match_report.json": "who was matched, who was not and why, every file not used, the rules applied",
    "match_report.csv": "one row per case seen: status, slides, expression sample, reasons",
}


def _csv(frame: pd.DataFrame, path: Path, index: bool) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=index)


def link_slides(cohort: TcgaCohort, folder: Path) -> int:
    """slides/<file name> -> the downloaded file, for each kept slide; a copy-free way for a tile stage
    to read exactly the cohort's slides. Returns how many links there are."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {s.slide_id: s.path.resolve() for case in cohort.matched for s in cohort.slides.get(case, [])}
    for old in folder.iterdir():
        if old.name not in wanted or not old.is_symlink() or old.resolve() != wanted[old.name]:
            old.unlink()
    for name, target in wanted.items():
        link = folder / name
        if not link.is_symlink():
            os.symlink(target, link)
    return len(wanted)


def write_tcga_cohort(cohort: TcgaCohort, out_dir: Path, link: bool = True) -> dict[str, Path]:
    """The files of OUTPUTS (omics.csv only with expression) and slides/ with `link`; name -> path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    _csv(cohort.cohort_table(), out_dir / "cohort.csv", index=False)
    written["cohort.csv"] = out_dir / "cohort.csv"
    if cohort.expression is not None:
        _csv(cohort.omics_table(), out_dir / "omics.csv", index=True)
        written["omics.csv"] = out_dir / "omics.csv"
    write_json_atomic(out_dir / "match_report.json", cohort.report())
    written["match_report.json"] = out_dir / "match_report.json"
    _csv(cohort.cases, out_dir / "match_report.csv", index=True)
    written["match_report.csv"] = out_dir / "match_report.csv"
    if link and cohort.settings["slides"]:
        link_slides(cohort, out_dir / "slides")
        written["slides"] = out_dir / "slides"
    return written
