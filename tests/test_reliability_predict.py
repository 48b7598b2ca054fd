"""`histo predict`'s closing notes: skipped slides out of how many, and `--mpp` for slides without it."""

from __future__ import annotations

import json
from pathlib import Path

from histo.plugins.training.predict_notes import predict_notes


def test_notes_count_skips_and_name_mpp(tmp_path: Path) -> None:
    tile = tmp_path / "stages" / "tile"
    tile.mkdir(parents=True)
    (tile / "slides.csv").write_text("slide_id,status\na,ok\nb,failed\nc,failed\nd,failed\ne,failed\n")
    reasons = {"b": "slide b (b.svs): microns per pixel unknown (no metadata)", "c": "cannot open", "d": "x"}
    (tile / "failures.jsonl").write_text(
        "".join(json.dumps({"item": k, "reason": v}) + "\n" for k, v in reasons.items())
    )
    notes = predict_notes(tmp_path)
    assert notes[0].startswith("4 of 5 slide(s) skipped")
    assert "1 slide(s) lack microns per pixel in their files (b): rerun with --mpp" in notes[1]


def test_no_notes_when_every_slide_was_used(tmp_path: Path) -> None:
    tile = tmp_path / "stages" / "tile"
    tile.mkdir(parents=True)
    (tile / "slides.csv").write_text("slide_id,status\na,ok\n")
    assert predict_notes(tmp_path) == []
