"""What the tile stage left for extraction: slides, magnifications, coords files and the reader to use.

Its folder holds `slides.csv` (slide_id, path, status, ...), `tiling.json` (magnifications, reader
and its params) and `coords/<mag>/<slide_id>.h5`.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from histo.errors import HistoError


@dataclass(frozen=True)
class TiledSlide:
    slide_id: str
    path: Path


@dataclass(frozen=True)
class TileFolder:
    root: Path
    slides: list[TiledSlide]  # the slides the tile stage finished, in its order
    magnifications: list[str]
    reader: str | None
    reader_params: dict[str, Any]

    def coords_path(self, magnification: str, slide_id: str) -> Path:
        return self.root / "coords" / magnification / f"{slide_id}.h5"

    def reader_for(
        self, name: str | None, params: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """The reader a coords file names (or the run's), with its params (the file's, else tiling.json's)."""
        chosen = name or self.reader
        if chosen is None:
            raise HistoError(f"{self.root}: neither tiling.json nor the coords files name a slide reader")
        if params is not None:
            return chosen, params
        return chosen, (self.reader_params if chosen == self.reader else {})


def _reader(tiling: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    reader = tiling.get("reader")
    if isinstance(reader, dict):
        return reader.get("name"), dict(reader.get("params") or {})
    if isinstance(reader, str):
        return reader, dict(tiling.get("reader_params") or {})
    return None, {}


def _magnifications(tiling: dict[str, Any], coords_dir: Path) -> list[str]:
    names = []
    for item in tiling.get("magnifications") or []:
        name = item.get("name") if isinstance(item, dict) else item
        if isinstance(name, str):
            names.append(name)
    if names:
        return names
    return sorted(p.name for p in coords_dir.iterdir() if p.is_dir()) if coords_dir.is_dir() else []


def read_tile_folder(root: Path) -> TileFolder:
    slides_csv = root / "slides.csv"
    if not slides_csv.is_file():
        raise HistoError(f"{slides_csv} is missing: `tiles` must name a tile stage that has run")
    with slides_csv.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    missing = {"slide_id", "path"} - set(rows[0] if rows else {"slide_id": "", "path": ""})
    if missing:
        raise HistoError(f"{slides_csv} lacks the column(s) {', '.join(sorted(missing))}")
    slides = [
        TiledSlide(row["slide_id"], Path(row["path"]))
        for row in rows
        if (row.get("status") or "ok").strip().lower() == "ok"
    ]
    tiling_json = root / "tiling.json"
    tiling: dict[str, Any] = {}
    if tiling_json.is_file():
        try:
            tiling = json.loads(tiling_json.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise HistoError(f"{tiling_json} is not valid JSON ({exc}); rerun the tile stage") from exc
    reader, params = _reader(tiling)
    return TileFolder(root, slides, _magnifications(tiling, root / "coords"), reader, params)
