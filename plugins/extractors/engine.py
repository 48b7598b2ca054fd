"""Batched, streamed patch-feature extraction: workers read, the model computes, bags come out whole.

Readers run in DataLoader workers (one open slide per worker), batches are pinned and copied to the
device without blocking, the model runs under `torch.inference_mode()`, in bf16 autocast and
channels-last on CUDA. Batches never mix slides, so the features of a slide do not depend on which
other slides share the run (the basis of identical single- and multi-process outputs).

A patch that cannot be read is *missing*: its row stays in the bag (aligned with the coords file and
with finer magnifications' `parent` indices), its features are NaN and `valid` is False.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from histo.interfaces import FeatureExtractor

from .modules import check_output, set_eval
from .patches import PatchDataset, PatchJob, SlideBatches

Precision = Literal["auto", "fp32", "bf16", "fp16"]
AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
MAX_ERRORS_KEPT = 5


def default_num_workers(processes_per_node: int = 1) -> int:
    """Leave one core to the main process (which runs the model); at most 8 readers per process."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, cores // max(1, processes_per_node) - 1))


def resolve_precision(precision: Precision, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: `auto` is bf16 on CUDA and full fp32 on CPU."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return AUTOCAST[precision]


@dataclass
class Bag:
    """The features of one job, rows aligned with its coords file."""

    job: PatchJob
    features: np.ndarray  # [N, D] float32, NaN where missing
    valid: np.ndarray  # [N] bool
    errors: list[str] = field(default_factory=list)  # the first few read errors

    @property
    def n_missing(self) -> int:
        return int((~self.valid).sum())


@dataclass
class Batch:
    """Features of one batch of one job (rows are consecutive)."""

    job_index: int
    rows: np.ndarray  # [b] int64
    features: np.ndarray  # [b, D] float32, NaN where missing
    valid: np.ndarray  # [b] bool
    errors: list[str]


class Engine:
    """Runs a built extractor over patch jobs."""

    def __init__(
        self,
        extractor: FeatureExtractor,
        model: nn.Module,
        *,
        device: torch.device | str = "cpu",
        batch_size: int = 64,
        num_workers: int | None = None,
        precision: Precision = "auto",
    ) -> None:
        self.extractor = extractor
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self.autocast = resolve_precision(precision, self.device)
        self.cuda = self.device.type == "cuda"
        model = set_eval(model).to(self.device)
        if self.cuda:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.model = model
        shape = (1, 3, 1, 1)
        self.mean = torch.tensor(extractor.mean, dtype=torch.float32, device=self.device).view(shape)
        self.std = torch.tensor(extractor.std, dtype=torch.float32, device=self.device).view(shape)

    def loader(self, jobs: Sequence[PatchJob]) -> DataLoader[tuple[torch.Tensor, int, int, bool, str]]:
        dataset = PatchDataset(jobs, self.extractor.input_size)
        workers = self.num_workers if len(dataset) > self.batch_size else 0  # a few patches: no fork
        return DataLoader(
            dataset,
            batch_sampler=SlideBatches(dataset.offsets, self.batch_size),
            num_workers=workers,
            pin_memory=self.cuda,
            prefetch_factor=4 if workers else None,
            persistent_workers=False,
        )

    @torch.inference_mode()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B, S, S, 3] -> float32 [B, D] on the CPU."""
        x = images.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
        x = (x - self.mean) / self.std
        x = x.contiguous(memory_format=torch.channels_last) if self.cuda else x.contiguous()
        with torch.autocast(
            self.device.type, dtype=self.autocast or torch.float32, enabled=self.autocast is not None
        ):
            out = self.model(x)
        check_output(out, x.shape[0], f"feature extractor {type(self.extractor).__name__}")
        return out.float().cpu()

    def batches(self, jobs: Sequence[PatchJob]) -> Iterator[Batch]:
        """Features batch by batch, in job order; a job's batches are consecutive."""
        dim = self.extractor.output_dim
        loader = self.loader(jobs)
        try:
            for images, job_index, rows, ok, errors in loader:
                ok_np = ok.numpy().astype(bool)
                features = np.full((len(ok_np), dim), np.nan, dtype=np.float32)
                if ok_np.any():
                    read = images if ok_np.all() else images[torch.from_numpy(ok_np)]
                    features[ok_np] = self.embed(read).numpy()
                yield Batch(
                    int(job_index[0]),
                    rows.numpy().astype(np.int64),
                    features,
                    ok_np,
                    [e for e in errors if e][:MAX_ERRORS_KEPT],
                )
        finally:
            loader.dataset.close()  # type: ignore[attr-defined]

    def run(self, jobs: Sequence[PatchJob], sink: BagSink) -> Iterator[int]:
        """Stream every job's batches into `sink`, yielding each job's index once it has ended.

        Jobs without patches get begin/end too. If extraction fails (or the caller stops early),
        the open job is aborted so its partial output is dropped.
        """
        current: int | None = None  # the job whose output is open
        upcoming = 0
        try:
            for batch in self.batches(jobs):
                while current != batch.job_index:
                    if current is not None:
                        sink.end(current)
                        finished, current = current, None
                        yield finished
                    sink.begin(upcoming)
                    current, upcoming = upcoming, upcoming + 1
                sink.add(batch)
            while current is not None or upcoming < len(jobs):
                if current is None:
                    sink.begin(upcoming)
                    current, upcoming = upcoming, upcoming + 1
                sink.end(current)
                finished, current = current, None
                yield finished
        except BaseException:
            if current is not None:
                sink.abort(current)
            raise

    def bags(self, jobs: Sequence[PatchJob]) -> list[Bag]:
        """Whole bags in memory (for small jobs, tests and benchmarks; the stage streams to files)."""
        sink = MemorySink(jobs, self.extractor.output_dim)
        for _ in self.run(jobs, sink):
            pass
        return sink.bags


class BagSink(Protocol):
    """Receives a job's batches between begin(job) and end(job); abort(job) when extraction fails."""

    def begin(self, job_index: int) -> None: ...

    def add(self, batch: Batch) -> None: ...

    def end(self, job_index: int) -> None: ...

    def abort(self, job_index: int) -> None: ...


class MemorySink:
    def __init__(self, jobs: Sequence[PatchJob], dim: int) -> None:
        self.jobs, self.dim = jobs, dim
        self.bags: list[Bag] = []

    def begin(self, job_index: int) -> None:
        n = len(self.jobs[job_index])
        self.bags.append(
            Bag(self.jobs[job_index], np.full((n, self.dim), np.nan, np.float32), np.zeros(n, bool))
        )

    def add(self, batch: Batch) -> None:
        bag = self.bags[-1]
        bag.features[batch.rows] = batch.features
        bag.valid[batch.rows] = batch.valid
        bag.errors = (bag.errors + batch.errors)[:MAX_ERRORS_KEPT]

    def end(self, job_index: int) -> None:
        pass

    def abort(self, job_index: int) -> None:
        self.bags.pop()
