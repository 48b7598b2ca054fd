"""Batched, streamed patch-feature extraction: workers read, the model computes, bags come out whole.

Readers run in DataLoader workers (one open slide per worker); on CUDA batches are pinned and copied
to the device without blocking. The model runs under `torch.inference_mode()`, in bf16 autocast on
CUDA, and channels-last wherever it has convolutions (on the CPU too: EfficientNet-Lite0 runs about
1.5x faster so). Batches never mix slides, so the features of a slide do not depend on which other
slides share the run (the basis of identical single- and multi-process outputs).

On the CPU the model and the readers share the cores: the model gets the cores the reader workers
leave free (`default_threads`), because an OpenMP team with more threads than free cores stalls at
every barrier while one of its threads waits for a core (up to 10x slower per op on a busy 2-core
machine, where one worker beside a 2-thread model made extraction slower than no worker at all).

On the CPU the model runs on slices of `model_batch` patches (32) of each batch, and the batches run
under `tuned_malloc()` (allocator.py): at batch 64 a CNN's activations are 100-300 MB each, and glibc
mapped each one afresh and unmapped it after use, so the process spent more time in page faults than
in the model. Slices keep the working set small and the heap keeps it between batches. A patch's
features do not depend on which others share its forward pass (tested bit for bit on the default
extractor), so the slices change no result.

A patch that cannot be read is *missing*: its row stays in the bag (aligned with the coords file and
with finer magnifications' `parent` indices), its features are NaN and `valid` is False.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from histo.interfaces import FeatureExtractor

from .allocator import tuned_malloc
from .modules import check_output, set_eval
from .patches import PatchDataset, PatchJob, SlideBatches

Precision = Literal["auto", "fp32", "bf16", "fp16"]
AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
MAX_ERRORS_KEPT = 5
CPU_MODEL_BATCH = 32  # patches per forward pass on a CPU: activations of 50-150 MB, not 100-300


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_num_workers(
    processes_per_node: int = 1, device: str = "cpu", max_threads: int | None = None
) -> int:
    """Reader processes per extraction process.

    CUDA: every core but one reads, at most 32, since reading is the limit there (efficientnet_lite0
    in bf16 on an H200 embeds 19,000 patches/s; OpenSlide loaders gave 3,100 patches/s with 8
    workers, 4,400 with 15). CPU: one core reads about 600 patches of 224 px per second and a model
    core embeds about 25 (efficientnet_lite0), so the model gets the cores: no worker on 2 cores or
    fewer (reading in the main process cost 7% of the model's time, while a worker took half of
    its threads: 37 against 27 patches/s end to end on an idle 2-core machine), one reader per 4
    cores beyond that, at most 8. An extractor whose module wants at most `max_threads` threads
    (`FeatureExtractor.max_threads`, e.g. `handcrafted`) leaves the other cores to readers.
    """
    cores = available_cores() // max(1, processes_per_node)
    if device.startswith("cuda"):
        return max(0, min(32, cores - 1))
    if max_threads is not None:
        return max(0, min(8, cores - max_threads))
    if cores <= 2:
        return 0
    return min(8, max(1, cores // 4))


def default_threads(num_workers: int) -> int | None:
    """Intra-op threads for a CPU model: the cores this process's reader workers leave free.

    None (keep torch's setting) where the user or the launcher chose it: `OMP_NUM_THREADS` is set
    (torchrun sets it to 1 for several processes per node).
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    per_node = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(1, available_cores() // per_node - num_workers)


@contextlib.contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to `threads` (None: unchanged) for the block, then restored."""
    if threads is None or threads == torch.get_num_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_precision(
    precision: Precision, device: torch.device, preferred: str | None = None
) -> torch.dtype | None:
    """The autocast dtype: `auto` is the extractor's `gpu_precision` (default bf16) on CUDA, fp32 on CPU."""
    if precision == "auto":
        if device.type != "cuda":
            return None
        return AUTOCAST[preferred] if preferred is not None and preferred in AUTOCAST else torch.bfloat16
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
        channels_last: bool | None = None,
        threads: int | None = None,
        model_batch: int | None = None,
    ) -> None:
        """`channels_last`: model and inputs laid out channels-last; by default where the model has
        convolutions (4-d weights). `threads`: the model's intra-op threads on a CPU; by default
        `default_threads(num_workers)`, fixed here rather than per loader (a loader of a few patches
        runs without workers) because the thread count can change a model's float rounding, and a
        slide's features must not depend on which other slides share its loader.
        """
        self.extractor = extractor
        self.device = torch.device(device)
        self.batch_size = batch_size
        cap = getattr(extractor, "max_threads", None)
        if num_workers is None:
            num_workers = default_num_workers(1, self.device.type, cap)
        self.num_workers = num_workers
        self.autocast = resolve_precision(precision, self.device, getattr(extractor, "gpu_precision", None))
        self.cuda = self.device.type == "cuda"
        if model_batch is None:
            model_batch = batch_size if self.device.type == "cuda" else CPU_MODEL_BATCH
        self.model_batch = max(1, model_batch)
        self.threads = default_threads(self.num_workers) if threads is None else threads
        if threads is None and cap is not None and self.threads is not None:
            self.threads = min(self.threads, cap)
        if self.cuda:
            self.threads = None  # the CPU only feeds the device
        model = set_eval(model).to(self.device)
        if channels_last is None:
            channels_last = any(p.ndim == 4 for p in model.parameters())
        self.channels_last = _set_memory_format(model, channels_last)
        self.model = model
        shape = (1, 3, 1, 1)
        self.mean = torch.tensor(extractor.mean, dtype=torch.float32, device=self.device).view(shape)
        self.std = torch.tensor(extractor.std, dtype=torch.float32, device=self.device).view(shape)
        self.normalise = tuple(extractor.mean) != (0, 0, 0) or tuple(extractor.std) != (1, 1, 1)

    @property
    def precision(self) -> str:
        """What the model runs in, `auto` resolved: fp32, bf16 or fp16."""
        return next(name for name, dtype in AUTOCAST.items() if dtype == self.autocast)

    def workers_for(self, n_patches: int) -> int:
        return self.num_workers if n_patches > self.batch_size else 0  # a few patches: no fork

    def loader(self, jobs: Sequence[PatchJob]) -> DataLoader[tuple[torch.Tensor, int, int, bool, str]]:
        interpolation = getattr(self.extractor, "interpolation", "bilinear")
        dataset = PatchDataset(jobs, self.extractor.input_size, interpolation)
        workers = self.workers_for(len(dataset))
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
        """uint8 [B, S, S, 3] -> float32 [B, D] on the CPU, `model_batch` patches at a time."""
        if images.shape[0] <= self.model_batch:
            return self.forward(self.prepare(images))
        return torch.cat([self.forward(self.prepare(part)) for part in images.split(self.model_batch)])

    @torch.inference_mode()
    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B, S, S, 3] -> the normalised float [B, 3, S, S] the model gets, on the device.

        The permuted uint8 batch is channels-last in memory already, so that layout costs no copy;
        the other one is transposed while still uint8 (a quarter of the bytes). Normalising in place
        gives the same floats as `(x / 255 - mean) / std` with one allocation instead of three (and,
        laid out NCHW, over whole channel planes rather than a 3-wide broadcast). The identity
        normalisation (mean 0, std 1) is skipped: it changes no value.
        """
        x = images.to(self.device, non_blocking=True).permute(0, 3, 1, 2)
        if not self.channels_last:
            x = x.contiguous()
        x = x.to(torch.float32, copy=True).div_(255)
        if self.normalise:
            x.sub_(self.mean).div_(self.std)
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=layout)

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model alone on a prepared batch -> float32 [B, D] on the CPU."""
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
            with intra_op_threads(self.threads), tuned_malloc():
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


def _set_memory_format(model: nn.Module, channels_last: bool) -> bool:
    """Lay the model's 4-d weights out channels-last (or back); False where it stays as it was.

    Both ways, because a module converted by an earlier engine would otherwise keep running
    channels-last whatever the input's layout.
    """
    layout = torch.channels_last if channels_last else torch.contiguous_format
    try:
        model.to(memory_format=layout)  # type: ignore[call-overload]
    except (RuntimeError, NotImplementedError, TypeError, AttributeError):
        return False
    return channels_last


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
