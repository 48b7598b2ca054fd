"""GDC sample sheets: which case and sample each downloaded file belongs to.

GDC writes them as TSV with the columns below; a file of a tumour/normal pair lists both samples in one
cell, separated by ", ". Rows keep their spreadsheet row number for messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from histo.errors import HistoError

from ..table import few, read_table, rows_text

COLUMNS = (
    "File ID",
    "File Name",
    "Data Category",
    "Data Type",
    "Project ID",
    "Case ID",
    "Sample ID",
    "Sample Type",
)
NEEDED = ("File Name", "Case ID", "Sample ID")


@dataclass(frozen=True)
class SheetEntry:
    """One file of a sample sheet."""

    sheet: str
    row: int
    file_id: str
    file_name: str
    data_type: str
    case_ids: tuple[str, ...]
    sample_ids: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"{self.sheet}, row {self.row}"


def _split(cell: object) -> tuple[str, ...]:
    if cell is None or (isinstance(cell, float) and cell != cell):
        return ()
    return tuple(part.strip() for part in str(cell).split(",") if part.strip())


def read_sample_sheet(path: Path) -> list[SheetEntry]:
    """Every row of a GDC sample sheet; an error names the missing columns or a repeated file name."""
    frame = read_table(path, list(COLUMNS))
    missing = [c for c in NEEDED if c not in frame.columns]
    if missing:
        raise HistoError(
            f"{path}: not a GDC sample sheet: column(s) {missing} missing (it has {few(frame.columns, 10)}). "
            "Download it from the GDC cart ('Sample Sheet'); it is tab-separated with the columns "
            f"{', '.join(COLUMNS)}"
        )
    names = frame["File Name"]
    blank = frame.index[names.isna()].tolist()
    if blank:
        raise HistoError(f"{path}: {rows_text(blank)} have no File Name; fill it in or delete the row")
    repeated = names[names.duplicated(keep=False)]
    if len(repeated):
        first = repeated.iloc[0]
        raise HistoError(
            f"{path}: file {first!r} is listed on {rows_text(repeated.index[repeated == first].tolist())}; "
            "a file belongs to one row"
        )
    entries = []
    for row, record in frame.iterrows():
        entries.append(
            SheetEntry(
                sheet=str(path),
                row=int(str(row)),
                file_id=str(record.get("File ID") or ""),
                file_name=str(record["File Name"]),
                data_type=str(record.get("Data Type") or ""),
                case_ids=_split(record["Case ID"]),
                sample_ids=_split(record["Sample ID"]),
            )
        )
    return entries


def read_sample_sheets(paths: list[Path]) -> dict[str, SheetEntry]:
    """File name -> entry over several sheets; the same file in two sheets must agree."""
    by_name: dict[str, SheetEntry] = {}
    for path in paths:
        for entry in read_sample_sheet(Path(path)):
            other = by_name.get(entry.file_name)
            if other is not None and (other.case_ids, other.sample_ids) != (entry.case_ids, entry.sample_ids):
                raise HistoError(
                    f"{entry.file_name} is listed in {other.where} for {', '.join(other.sample_ids)} and in "
                    f"{entry.where} for {', '.join(entry.sample_ids)}; keep one of the sheets"
                )
            by_name.setdefault(entry.file_name, entry)
    return by_name
