"""What `histo predict` says after its run: how many slides were skipped and, for slides without
microns per pixel, the command-line fix (`--mpp`) rather than the recipe keys a tile stage names."""

from __future__ import annotations

import json
from pathlib import Path

MISSING_MPP = "microns per pixel unknown"


def _records(path: Path) -> list[dict[str, object]]:
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def predict_notes(out_dir: Path) -> list[str]:
    """Lines for the terminal: skipped slides out of how many, and the `--mpp` fix when it applies."""
    import pandas as pd

    stages = out_dir / "stages"
    notes = []
    table, failures = stages / "tile" / "slides.csv", stages / "tile" / "failures.jsonl"
    if table.is_file():
        slides = pd.read_csv(table)
        failed = int((slides["status"] != "ok").sum()) if "status" in slides else 0
        if failed:
            notes.append(
                f"{failed} of {len(slides)} slide(s) skipped; why for each: {failures}"
            )
    no_mpp = [str(r.get("item")) for r in _records(failures) if MISSING_MPP in str(r.get("reason"))]
    if no_mpp:
        shown = ", ".join(no_mpp[:5]) + (", ..." if len(no_mpp) > 5 else "")
        notes.append(
            f"{len(no_mpp)} slide(s) lack microns per pixel in their files ({shown}): rerun with "
            "--mpp <microns per pixel> (40x scans ~0.25, 20x ~0.5), for slides scanned alike"
        )
    return notes
