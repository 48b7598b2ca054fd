"""Streams each bag's batches into its HDF5 file, committed whole or not at all."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from histo.plugins.features.writer import BagWriter

from .engine import MAX_ERRORS_KEPT, Batch
from .patches import PatchJob


@dataclass(frozen=True)
class Outcome:
    """What became of one bag: written (with how many patches missing) or failed, and why."""

    path: Path
    n_patches: int
    n_missing: int
    errors: tuple[str, ...]
    failed: str | None = None  # the reason no file was written


class FileSink:
    """A BagSink writing `targets[i]` for `jobs[i]`; a bag whose every patch is missing gets no file."""

    def __init__(
        self,
        jobs: Sequence[PatchJob],
        targets: Sequence[Path],
        *,
        feature_dim: int,
        attrs: dict[str, Any],
        dtype: str = "float32",
    ) -> None:
        self.jobs, self.targets = jobs, targets
        self.feature_dim, self.attrs, self.dtype = feature_dim, attrs, dtype
        self.outcomes: dict[int, Outcome] = {}
        self._writer: BagWriter | None = None
        self._errors: list[str] = []

    def begin(self, job_index: int) -> None:
        grid = self.jobs[job_index].grid
        self._errors = []
        self._writer = BagWriter(
            self.targets[job_index],
            coords=grid.coords,
            feature_dim=self.feature_dim,
            attrs={**grid.attrs, **self.attrs},
            carried=grid.carried,
            dtype=self.dtype,
        )

    def add(self, batch: Batch) -> None:
        assert self._writer is not None
        self._writer.write(batch.rows, batch.features, batch.valid)
        self._errors = (self._errors + batch.errors)[:MAX_ERRORS_KEPT]

    def end(self, job_index: int) -> None:
        writer, self._writer = self._writer, None
        assert writer is not None
        n, missing = writer.n, writer.n_missing
        failed = None
        if n and missing == n:
            writer.abort()
            first = self._errors[0] if self._errors else "unknown error"
            failed = f"none of its {n} patches could be read (first error: {first})"
        else:
            writer.commit()
        self.outcomes[job_index] = Outcome(self.targets[job_index], n, missing, tuple(self._errors), failed)

    def abort(self, job_index: int) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.abort()
