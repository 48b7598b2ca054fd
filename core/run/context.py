"""What a stage sees while it runs: its directory, upstream outputs, logging, failures and metrics."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class StageContext:
    stage_id: str
    run_dir: Path
    out_dir: Path  # this stage's own folder: write outputs here (atomically, see histo.io)
    seed: int
    device: str  # "cpu" or "cuda", resolved from the recipe's `device`
    strict: bool
    log: logging.Logger
    upstream: dict[str, Path] = field(default_factory=dict)  # earlier stage id -> its folder
    failures: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)  # path relative to run_dir -> description
    show_progress: bool = True
    rank: int = 0  # this process under torchrun; 0 otherwise
    world_size: int = 1
    _recorded_now: set[tuple[str, str]] = field(default_factory=set, repr=False)
    _previous: set[tuple[str, str]] | None = field(default=None, repr=False)

    @property
    def is_main(self) -> bool:
        """True on the process that writes shared files (rank 0)."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every process of a torchrun launch (no-op in a single process)."""
        if self.world_size > 1:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                dist.barrier()

    def stage_dir(self, stage_id: str) -> Path:
        """The output folder of an earlier stage (named by a `StageRef` field of the config)."""
        if stage_id not in self.upstream:
            raise KeyError(f"stage {stage_id!r} has not run before {self.stage_id!r}")
        return self.upstream[stage_id]

    def record_failure(
        self, item: str, reason: str, *, error: BaseException | None = None, **details: Any
    ) -> None:
        """Note an item (slide, patient, row) that was skipped; the run goes on with the rest.

        Pass the caught exception as `error`: an environment error (disk full, read-only, permission
        denied, I/O error) is then raised instead, failing the stage, since the item is not at fault.
        """
        if error is not None:
            from .environment import raise_if_environment

            raise_if_environment(error, self.out_dir)
        record = {"stage": self.stage_id, "item": item, "reason": reason, **details}
        key = (item, reason)
        if key in self._recorded_now:  # one record per item and cause
            return
        self._recorded_now.add(key)
        self.failures.append(record)
        self.log.debug("%s: skipped %s: %s", self.stage_id, item, reason)  # summarised after the stage
        if key in self._recorded_before():  # a resumed stage meets the same bad item again
            return
        with (self.out_dir / "failures.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, default=str) + "\n")

    def _recorded_before(self) -> set[tuple[str, str]]:
        """(item, reason) of the records an interrupted earlier attempt of this stage wrote."""
        if self._previous is None:
            self._previous = set()
            path = self.out_dir / "failures.jsonl"
            if path.is_file():
                for line in path.read_text(encoding="utf-8").splitlines():
                    try:
                        old = json.loads(line)
                    except ValueError:  # a line cut short by a kill: rewritten when met again
                        continue
                    self._previous.add((str(old.get("item")), str(old.get("reason"))))
        return self._previous

    def add_metrics(self, **values: Any) -> None:
        self.metrics.update(values)

    def add_artifact(self, path: Path, description: str) -> None:
        self.artifacts[str(Path(path).resolve().relative_to(self.run_dir.resolve()))] = description

    def progress(self, items: Iterable[T], total: int | None = None, description: str = "") -> Iterator[T]:
        """Iterate with a progress bar on a terminal, and a log line every ~10% otherwise."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        if total is None and hasattr(items, "__len__"):
            total = len(items)  # type: ignore[arg-type]
        label = description or self.stage_id
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, transient=True, disable=not self.show_progress) as bar:
            task = bar.add_task(label, total=total)
            step = max(1, (total or 10) // 10)
            start = time.monotonic()
            for done, item in enumerate(items, 1):
                yield item
                bar.advance(task)
                if done % step == 0 or done == total:
                    self.log.debug("%s: %d/%s (%.1fs)", label, done, total or "?", time.monotonic() - start)
