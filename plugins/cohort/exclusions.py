"""The record of a patient (or row) left out of a cohort, so that every skip has a stated reason."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Exclusion:
    """One patient or row that was skipped while the run went on.

    `rows` are spreadsheet row numbers in `file` (header = row 1); `patient` is None when the row had
    no usable patient id.
    """

    file: str
    reason: str
    patient: str | None = None
    rows: tuple[int, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rows"] = list(self.rows)
        return data

    def __str__(self) -> str:
        who = f"patient {self.patient}" if self.patient is not None else "row"
        where = f" ({self.file}, row{'s' if len(self.rows) > 1 else ''} {', '.join(map(str, self.rows))})"
        return f"{who}{where if self.rows else f' ({self.file})'}: {self.reason}"
