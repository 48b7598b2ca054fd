"""Reading delimited tables so that every later message can name the file and the spreadsheet row.

The returned frame is indexed by spreadsheet row number (header = row 1, first data row = row 2),
which is what a user sees when they open the file to fix it.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from histo.errors import HistoError

DELIMITERS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
SLIDE_EXTENSIONS = (
    ".svs",
    ".tif",
    ".tiff",
    ".ndpi",
    ".mrxs",
    ".scn",
    ".vms",
    ".vmu",
    ".bif",
    ".svslide",
    ".czi",
    ".dcm",
    ".isyntax",
    ".h5",
    ".pt",
)


def rows_text(rows: Iterable[int], limit: int = 8) -> str:
    """'rows 3, 7 and 9' style text, truncated so that a message stays readable."""
    rows = list(rows)
    shown = ", ".join(str(r) for r in rows[:limit])
    more = f" (+{len(rows) - limit} more)" if len(rows) > limit else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


def shown(value: object) -> str:
    """A cell value as a message shows it: `'G2'` or `6.54`, never `np.float64(6.54)`."""
    item = getattr(value, "item", None)
    return repr(item() if callable(item) else value)


def few(items: Iterable[object], limit: int = 5) -> str:
    """The first few items, comma-separated, with a count of the rest."""
    items = list(items)
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f", ... (+{len(items) - limit} more)" if len(items) > limit else "")


def slide_key(slide_id: str) -> str:
    """A slide id without a slide-file extension: `X.svs` and the feature file `X.h5` share the key `X`.

    Only known extensions are removed, since TCGA ids contain dots (`...DX1.70F638A0-...`).
    """
    lowered = slide_id.lower()
    for ext in SLIDE_EXTENSIONS:
        if lowered.endswith(ext):
            return slide_id[: -len(ext)]
    return slide_id


def _delimiter(path: Path) -> str:
    """From the extension, unless the header shows another one (a spreadsheet's `;`-separated .csv);
    else sniffed among comma, tab and semicolon."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".xz", ".zip"):
        suffixes = suffixes[:-1]
    by_name = DELIMITERS.get(suffixes[-1]) if suffixes else None
    if path.suffix.lower() in (".bz2", ".xz", ".zip"):
        return by_name or ","
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        sample = handle.read(65536)
    if not sample.strip():
        raise HistoError(f"{path}: the file is empty; expected a header row and one row per record")
    header = sample.splitlines()[0]
    if by_name is not None and (by_name in header or not any(d in header for d in ",\t;")):
        return by_name
    try:
        return csv.Sniffer().sniff(sample, delimiters=",\t;").delimiter
    except csv.Error as exc:
        raise HistoError(
            f"{path}: cannot tell whether it is comma-, tab- or semicolon-separated; name it .csv or .tsv"
        ) from exc


def _is_row_counter(values: pd.Series) -> bool:
    """True for the 0..n-1 (or 1..n) column that `DataFrame.to_csv` writes under a blank header."""
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.isna().any() or len(numbers) == 0:
        return False
    start = numbers.iloc[0]
    return bool(
        start in (0, 1) and np.array_equal(numbers.to_numpy(), np.arange(start, start + len(numbers)))
    )


def read_table(
    path: Path, text_columns: Sequence[str | None] = (), *, drop_row_counter: bool = True
) -> pd.DataFrame:
    """A CSV/TSV (delimiter from the extension, else sniffed) indexed by spreadsheet row number.

    `text_columns` (names, or None for the first column) are read as stripped text, so ids such as
    `007` stay as written; blank cells there become missing. Fully blank rows are dropped after the
    row numbers are assigned, so numbers still match the file. With `drop_row_counter`, a leading
    blank-header column holding 0..n-1 (a pandas index written by `to_csv`) is dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise HistoError(
            f"{path}: no such file; check the path in the recipe (relative paths are resolved "
            "from the directory histo runs in)"
        )
    sep = _delimiter(path)
    try:
        header = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError as exc:
        raise HistoError(f"{path}: the file is empty; expected a header row and one row per record") from exc
    names = [str(n).strip() for n in header.iloc[0].tolist()]
    named = [n for n in names if n]
    repeated = sorted({n for n in named if named.count(n) > 1})
    if repeated:
        raise HistoError(
            f"{path}: column name(s) {few(repeated)} appear more than once in the header (row 1); "
            "every column needs a unique name"
        )
    columns = [n if n else f"Unnamed: {i}" for i, n in enumerate(names)]
    wanted = {columns[0] if c is None else c for c in text_columns}
    try:
        frame = pd.read_csv(
            path,
            sep=sep,
            header=None,
            skiprows=1,
            names=columns,
            skip_blank_lines=False,
            dtype={c: str for c in wanted if c in columns},
            low_memory=False,
        )
    except (ValueError, pd.errors.ParserError) as exc:
        raise HistoError(
            f"{path}: not a readable {'CSV' if sep == ',' else 'delimited'} table: {exc}"
        ) from exc
    frame.index = pd.RangeIndex(2, len(frame) + 2, name="row")
    for column in wanted & set(frame.columns):
        text = frame[column].astype("string").str.strip()
        frame[column] = text.mask(text.eq("").fillna(False))
    frame = frame.loc[~frame.isna().all(axis=1)]
    if frame.empty:
        raise HistoError(f"{path}: the table has a header but no rows")
    first = frame.columns[0]
    if drop_row_counter and not names[0] and first not in wanted and _is_row_counter(frame[first]):
        frame = frame.drop(columns=first)
    return frame


def require_columns(frame: pd.DataFrame, path: Path, required: dict[str, str | None]) -> None:
    """Fail naming the config field, the missing column and the columns the file does have."""
    missing = [
        (field, col) for field, col in required.items() if col is not None and col not in frame.columns
    ]
    if missing:
        wanted = "; ".join(f"{field}: {col!r}" for field, col in missing)
        raise HistoError(
            f"{path}: column(s) not found ({wanted}). The file has: {few(frame.columns, 12)}. "
            "Set the field to one of these names."
        )
