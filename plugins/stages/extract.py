"""The `extract` stage: patch features for every slide and magnification the tile stage gridded.

Writes, in its folder:
    features/<mag>/<slide_id>.h5   one bag per slide and magnification (histo.plugins.features.writer)
    manifest.csv                   slide_id, magnification, status, n_patches, n_missing, file, error
    extraction.json                the extractor, its config and hash, feature size, normalisation
    shards/<mag>/shard-*.tar       with `shards: true`: webdataset shards of the bags, + index.json
Resumable: a bag whose file exists (with the same extractor hash) is not computed again.
Under torchrun each process extracts slides[rank::world_size]; rank 0 writes the shared files.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from histo import ComponentSpec
from histo.errors import HistoError
from histo.interfaces import Stage, StageContext
from histo.recipe.refs import FeatureExtractorRef, StageRef
from histo.run import raise_if_environment

SLIDES_PER_LOADER = 16  # slides whose coords one DataLoader holds: bounds memory on big cohorts
MANIFEST_COLUMNS = (
    "slide_id",
    "magnification",
    "status",
    "n_patches",
    "n_missing",
    "feature_dim",
    "file",
    "error",
)


class ExtractConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tiles: StageRef = Field(description="id of the tile stage whose coords to embed")
    extractor: FeatureExtractorRef = Field(
        default_factory=lambda: FeatureExtractorRef(name="efficientnet_lite0"),
        description="the patch encoder (see `histo plugins`, kind feature_extractors)",
    )
    magnifications: list[str] | None = Field(
        default=None, description="which of the tile stage's magnifications to embed; default all"
    )
    batch_size: int = Field(default=64, ge=1, le=65536, description="patches per batch read and written")
    model_batch: int | None = Field(
        default=None,
        ge=1,
        le=65536,
        description="patches per forward pass, a batch run in slices of this size; default on the CPU: "
        "32 (smaller activations, which the allocator keeps between passes: docs/performance.md), on "
        "CUDA: batch_size; features do not depend on it",
    )
    num_workers: int | None = Field(
        default=None,
        ge=0,
        description="reader processes per extraction process; default on CUDA: cores - 1 (at most 32, "
        "reading is the limit there); on the CPU, where the model needs the cores: none on 2 cores or "
        "fewer, else one per 4 cores (at most 8); an extractor capped at `max_threads` leaves the rest "
        "to readers",
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        default="auto",
        description="autocast dtype; auto is the extractor's GPU precision (bf16 unless it names one, "
        "e.g. fp16 for uni) on CUDA and fp32 on CPU",
    )
    feature_dtype: Literal["float32", "float16"] = Field(
        default="float32", description="dtype stored on disk"
    )
    shards: bool = Field(default=False, description="also pack the bags into webdataset .tar shards")
    shard_max_slides: int = Field(default=64, ge=1, description="bags per shard at most")
    shard_max_mb: float | None = Field(
        default=None, gt=0, description="shard size limit in MB (besides the count)"
    )


class ExtractStage(Stage[ExtractConfig]):
    version = "1"

    def run(self, ctx: StageContext) -> None:
        from histo import __version__
        from histo.plugins.extractors.hashing import extractor_hash
        from histo.plugins.extractors.resolution import resolution_warnings
        from histo.plugins.extractors.tiles import read_tile_folder

        cfg = self.config
        tiles = read_tile_folder(ctx.stage_dir(cfg.tiles))
        mags = self._magnifications(tiles.magnifications, tiles.root)
        extractor = cfg.extractor.build()
        model = extractor.build()  # some extractors learn their sizes here
        description = extractor.describe()
        if ctx.is_main:
            for warning in resolution_warnings(cfg.extractor.name, description, tiles.root, mags):
                ctx.log.warning("%s: %s", ctx.stage_id, warning)
        digest = extractor_hash(cfg.extractor.name, description)
        config_json = {"name": cfg.extractor.name, "params": cfg.extractor.params, **description}
        file_attrs = {
            "extractor": cfg.extractor.name,
            "extractor_config": json.dumps(config_json, sort_keys=True, default=str),
            "extractor_hash": digest,
            "histo_version": __version__,
        }
        features_dir = ctx.out_dir / "features"
        if ctx.is_main:
            for partial in features_dir.glob("*/.*.partial"):  # left by a killed run; never trusted
                partial.unlink()
        ctx.barrier()

        counts: Counter[str] = Counter()
        start = time.monotonic()
        error: BaseException | None = None
        ran: dict[str, str] = {}
        try:  # this process's share of the slides
            engine = self._engine(ctx, extractor, model)
            ran = {"device": str(engine.device), "precision_used": engine.precision}
            run = _Extraction(
                ctx, tiles, mags, engine, features_dir, digest, file_attrs, cfg.feature_dtype, counts
            )
            mine = tiles.slides[ctx.rank :: ctx.world_size]
            for _ in ctx.progress(run.bags(mine), total=len(mine) * len(mags), description=ctx.stage_id):
                pass
        except Exception as exc:  # still take part in the collectives below, so no rank waits forever
            error = exc
        keys = ("written", "resumed", "patches", "errors")
        counts["errors"] = int(error is not None)
        totals = dict(zip(keys, _all_reduce(ctx, [float(counts[k]) for k in keys], "sum"), strict=True))
        elapsed = _all_reduce(ctx, [time.monotonic() - start], "max")[0]  # every rank is done here
        if error is not None:
            raise error
        if totals["errors"]:
            raise HistoError(
                f"extraction failed in {int(totals['errors'])} other process(es); see their logs"
            )
        if not ctx.is_main:
            return
        rows = self._manifest(ctx, tiles.slides, mags, features_dir)
        self._write_summary(ctx, extractor, description, digest, mags, __version__, ran)
        if cfg.shards:
            self._write_shards(ctx, rows)
        done = [r for r in rows if r["status"] == "ok"]
        failed_slides = {r["slide_id"] for r in rows if r["status"] != "ok"}
        ctx.add_metrics(
            slides=len({r["slide_id"] for r in done} - failed_slides),
            slides_total=len(tiles.slides),
            bags=len(done),
            bags_failed=len(rows) - len(done),
            bags_written=int(totals["written"]),
            bags_resumed=int(totals["resumed"]),
            patches=sum(int(r["n_patches"]) for r in done),
            missing_patches=sum(int(r["n_missing"]) for r in done),
            patches_extracted=int(totals["patches"]),
            patches_per_s=round(totals["patches"] / elapsed, 2) if elapsed > 0 else None,
            seconds=round(elapsed, 2),
            feature_dim=extractor.output_dim,
            world_size=ctx.world_size,
        )

    def _engine(self, ctx: StageContext, extractor: Any, model: Any) -> Any:
        """The engine on this process's device; reader workers shared among the node's processes."""
        from histo.plugins.extractors.engine import Engine, default_num_workers

        cfg = self.config
        device = self._device(ctx.device)
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        workers = (
            cfg.num_workers
            if cfg.num_workers is not None
            else default_num_workers(per_node, device.type, getattr(extractor, "max_threads", None))
        )
        engine = Engine(
            extractor,
            model,
            device=device,
            batch_size=cfg.batch_size,
            num_workers=workers,
            precision=cfg.precision,
            model_batch=cfg.model_batch,
        )
        ctx.log.info(
            "%s: %s (%d-d) on %s, batch %d (forward passes of %d), %d reader(s) per process, "
            "process %d of %d",
            ctx.stage_id,
            cfg.extractor.name,
            extractor.output_dim,
            device,
            cfg.batch_size,
            engine.model_batch,
            workers,
            ctx.rank + 1,
            ctx.world_size,
        )
        return engine

    def _magnifications(self, available: list[str], root: Path) -> list[str]:
        wanted = self.config.magnifications or available
        if not available:
            raise HistoError(
                f"{root} has no magnifications (tiling.json and coords/ are empty); rerun the tile stage"
            )
        unknown = [m for m in wanted if m not in available]
        if unknown:
            raise HistoError(
                f"magnifications {', '.join(unknown)} were not tiled by the tile stage ({root}); "
                f"it has: {', '.join(available)}"
            )
        return list(wanted)

    @staticmethod
    def _device(name: str) -> Any:
        import torch

        if name == "cuda":
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            return torch.device("cuda", local)
        return torch.device("cpu")

    def _manifest(
        self, ctx: StageContext, slides: list[Any], mags: list[str], features_dir: Path
    ) -> list[dict[str, Any]]:
        """One row per (slide, magnification), built from the files on disk: right after a resume too."""
        import h5py

        from histo.io import atomic_path

        reasons = _failure_reasons(ctx.out_dir / "failures.jsonl")
        rows: list[dict[str, Any]] = []
        for slide in slides:
            for mag in mags:
                path = features_dir / mag / f"{slide.slide_id}.h5"
                row: dict[str, Any] = {"slide_id": slide.slide_id, "magnification": mag}
                if path.is_file():
                    with h5py.File(path, "r") as f:
                        n, missing, dim = (int(f.attrs[k]) for k in ("n_patches", "n_missing", "feature_dim"))
                    row.update(
                        status="ok",
                        n_patches=n,
                        n_missing=missing,
                        feature_dim=dim,
                        file=str(path.relative_to(ctx.out_dir)),
                        error="",
                    )
                else:
                    error = reasons.get((slide.slide_id, mag)) or reasons.get(
                        (slide.slide_id, None), "not extracted"
                    )
                    row.update(
                        status="failed", n_patches=0, n_missing=0, feature_dim="", file="", error=error
                    )
                rows.append(row)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        with atomic_path(ctx.out_dir / "manifest.csv") as tmp:
            tmp.write_text(buffer.getvalue(), encoding="utf-8")
        ctx.add_artifact(
            ctx.out_dir / "manifest.csv", "one row per slide and magnification: status, patches, file"
        )
        ctx.add_artifact(features_dir, "features/<magnification>/<slide_id>.h5 feature bags")
        return rows

    def _write_summary(
        self,
        ctx: StageContext,
        extractor: Any,
        description: dict[str, Any],
        digest: str,
        mags: list[str],
        version: str,
        ran: dict[str, str],
    ) -> None:
        """`ran`: the device and the precision `auto` resolved to (bf16 autocast on CUDA, fp32 else)."""
        from histo.io import write_json_atomic

        cfg = self.config
        summary = {
            "extractor": cfg.extractor.name,
            "extractor_config": cfg.extractor.params,
            "extractor_hash": digest,
            "description": description,
            "feature_dim": extractor.output_dim,
            "input_size": extractor.input_size,
            "mean": list(extractor.mean),
            "std": list(extractor.std),
            "magnifications": mags,
            "feature_dtype": cfg.feature_dtype,
            "precision": cfg.precision,
            **ran,
            "layout": "features/<magnification>/<slide_id>.h5",
            "histo_version": version,
        }
        write_json_atomic(ctx.out_dir / "extraction.json", summary)
        ctx.add_artifact(
            ctx.out_dir / "extraction.json", "extractor, config hash, feature size and normalisation"
        )

    def _write_shards(self, ctx: StageContext, rows: list[dict[str, Any]]) -> None:
        from histo.plugins.features.shards import write_shards

        cfg = self.config
        max_bytes = int(cfg.shard_max_mb * 1e6) if cfg.shard_max_mb else None
        for mag in dict.fromkeys(r["magnification"] for r in rows):
            bags = [
                (r["slide_id"], mag, ctx.out_dir / r["file"])
                for r in rows
                if r["magnification"] == mag and r["status"] == "ok"
            ]
            out = ctx.out_dir / "shards" / mag
            index = write_shards(bags, out, max_samples=cfg.shard_max_slides, max_bytes=max_bytes)
            ctx.add_artifact(
                out, f"webdataset shards of the {mag} bags ({len(index['shards'])} shards, index.json)"
            )


class _Extraction:
    """One process's share of the work: plan bags per slide, skip finished ones, stream the rest."""

    def __init__(
        self,
        ctx: StageContext,
        tiles: Any,
        mags: list[str],
        engine: Any,
        features_dir: Path,
        digest: str,
        attrs: dict[str, Any],
        dtype: str,
        counts: Counter[str],
    ) -> None:
        self.ctx, self.tiles, self.mags, self.engine = ctx, tiles, mags, engine
        self.features_dir, self.digest, self.attrs, self.dtype, self.counts = (
            features_dir,
            digest,
            attrs,
            dtype,
            counts,
        )
        self._readers: dict[str, Any] = {}

    def bags(self, slides: list[Any]) -> Iterator[None]:
        """Yields once per (slide, magnification) of `slides`, whatever became of it."""
        from histo.plugins.extractors.sink import FileSink

        for first in range(0, len(slides), SLIDES_PER_LOADER):
            jobs, targets = [], []
            for slide in slides[first : first + SLIDES_PER_LOADER]:
                planned = self._plan(slide)
                yield from (None for _ in range(len(self.mags) - len(planned)))  # skipped or failed
                for job, target in planned:
                    jobs.append(job)
                    targets.append(target)
            sink = FileSink(
                jobs,
                targets,
                feature_dim=self.engine.extractor.output_dim,
                attrs=self.attrs,
                dtype=self.dtype,
            )
            for index in self.engine.run(jobs, sink):
                self._report(jobs[index], sink.outcomes[index])
                yield None

    def _plan(self, slide: Any) -> list[tuple[Any, Path]]:
        """The bags of one slide still to compute; records the slide's failure if it cannot be read."""
        from histo.plugins.extractors.coords import read_grid
        from histo.plugins.extractors.patches import PatchJob, SlideSource

        todo = []
        for mag in self.mags:
            target = self.features_dir / mag / f"{slide.slide_id}.h5"
            if _finished(target, self.digest):
                self.counts["resumed"] += 1
                continue
            coords = self.tiles.coords_path(mag, slide.slide_id)
            if not coords.is_file():
                self._fail(slide.slide_id, f"no coords file {coords}; the tile stage did not grid it", mag)
                continue
            try:
                grid = read_grid(coords, mag)
            except HistoError as exc:
                self._fail(slide.slide_id, str(exc), mag)
                continue
            todo.append((grid, target))
        if not todo:
            return []
        grid = todo[0][0]
        try:
            source = SlideSource(
                grid.slide_path, self._reader(grid.reader, grid.reader_params), grid.mpp_override
            )
            _check_slide(source, grid)
        except Exception as exc:  # cannot open, or not the slide that was tiled: skip the slide
            raise_if_environment(exc, grid.slide_path)
            message = str(exc) if isinstance(exc, HistoError) else f"{type(exc).__name__}: {exc}"
            self._fail(slide.slide_id, message, None, magnifications=[g.magnification for g, _ in todo])
            return []
        return [(PatchJob(source, g), target) for g, target in todo]

    def _reader(self, name: str | None, params: dict[str, Any] | None) -> Any:
        """One reader instance per (name, params), shared by every job that uses it."""
        from histo.manager import get_plugins

        reader_name, reader_params = self.tiles.reader_for(name, params)
        key = json.dumps([reader_name, reader_params], sort_keys=True, default=str)
        if key not in self._readers:
            self._readers[key] = get_plugins().registry("slide_readers").build(reader_name, reader_params)
        return self._readers[key]

    def _report(self, job: Any, outcome: Any) -> None:
        slide_id, mag = job.grid.slide_id, job.grid.magnification
        if outcome.failed:
            self._fail(slide_id, outcome.failed, mag)
            return
        self.counts["written"] += 1
        self.counts["patches"] += outcome.n_patches - outcome.n_missing
        self.counts["missing"] += outcome.n_missing
        if outcome.n_missing:
            self.ctx.log.warning(
                "%s: slide %s (%s): %d of %d patches could not be read and are marked missing (first: %s)",
                self.ctx.stage_id,
                slide_id,
                mag,
                outcome.n_missing,
                outcome.n_patches,
                outcome.errors[0] if outcome.errors else "?",
            )

    def _fail(self, slide_id: str, reason: str, mag: str | None, **details: Any) -> None:
        self.counts["failed"] += 1
        self.ctx.record_failure(slide_id, reason, magnification=mag, **details)


def _finished(target: Path, digest: str) -> bool:
    """A bag file is trusted when it exists (atomic writes: it is whole) and has this extractor's hash."""
    if not target.is_file():
        return False
    import h5py

    try:
        with h5py.File(target, "r") as f:
            return bool(f.attrs.get("extractor_hash") == digest)
    except OSError:
        return False


def _check_slide(source: Any, grid: Any) -> None:
    """Open the slide once in the main process, so a bad file is one clear failure, not N missing patches."""
    with source.open() as slide:
        expected = (grid.attrs.get("level0_width"), grid.attrs.get("level0_height"))
        if None not in expected and tuple(int(v) for v in expected) != tuple(slide.dimensions):
            width, height = slide.dimensions
            raise HistoError(
                f"slide {grid.slide_id} ({source.path}) is {width}x{height} pixels, but it was tiled at "
                f"{expected[0]}x{expected[1]} ({grid.path}): the file changed; rerun the tile stage"
            )


def _failure_reasons(path: Path) -> dict[tuple[str, str | None], str]:
    """(slide, magnification or None for the whole slide) -> last recorded reason."""
    reasons: dict[tuple[str, str | None], str] = {}
    if not path.is_file():
        return reasons
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill
        reasons[(str(record.get("item")), record.get("magnification"))] = str(record.get("reason"))
    return reasons


def _all_reduce(ctx: StageContext, values: list[float], op: Literal["sum", "max"]) -> list[float]:
    """Combine per-process numbers under torchrun (identity in a single process)."""
    if ctx.world_size <= 1:
        return values
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return [float(v) for v in tensor.cpu().tolist()]


SPEC = ComponentSpec(
    name="extract",
    factory=ExtractStage,
    config=ExtractConfig,
    description="patch features for every tiled slide and magnification (HDF5 bags, optional shards)",
)
