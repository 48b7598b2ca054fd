"""Executes a validated recipe into a run directory, skipping stages whose cache key is unchanged.

Layout of a run directory:
    recipe.yaml        the resolved recipe (every default filled in)
    recipe.sha256      hash of the resolved recipe
    provenance.json    versions of histo, torch, Python, plugin packages; the command line
    histo.log          the full log
    summary.json       status, timing, metrics, failures and artifacts of every stage
    stages/<id>/       each stage's outputs, with stage.json (its cache key and result)
"""

from __future__ import annotations

import shutil
import sys
import time
import traceback
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from ..errors import HistoError
from ..io import read_json, write_json_atomic, write_text_atomic
from ..manager import Plugins, get_plugins
from ..recipe.loader import LoadedRecipe, ResolvedStage
from .blame import blame
from .context import StageContext
from .distributed import DistEnv
from .environment import EnvironmentFault, environment_errors_fail
from .failures import summarise_failures
from .fingerprint import digest, stage_fingerprint
from .logs import close_run_log, open_run_log
from .provenance import provenance
from .rerun import forced_stages

DONE = "stage.json"
IN_PROGRESS = "in_progress.json"


@dataclass
class RunResult:
    run_dir: Path
    summary: dict[str, Any]

    @property
    def ok(self) -> bool:
        return bool(self.summary["status"] == "done")

    @property
    def failures(self) -> int:
        return int(sum(s.get("failures", 0) for s in self.summary["stages"]))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def resolve_device(requested: str) -> str:
    if requested == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if requested == "cuda":
        raise HistoError("the recipe asks for device: cuda, but torch sees no CUDA device; use device: auto")
    return "cpu"


def run_recipe(
    loaded: LoadedRecipe,
    out: Path | None = None,
    *,
    plugins: Plugins | None = None,
    quiet: bool = False,
    argv: list[str] | None = None,
    rerun: Collection[str] = (),
) -> RunResult:
    """`rerun`: stage ids to run even if cached; the stages that depend on them rerun too."""
    plugins = plugins or get_plugins()
    forced = forced_stages(loaded, rerun)
    run_dir = Path(out) if out is not None else Path("runs") / loaded.name
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(loaded.recipe.device)
    dist = DistEnv.from_environment(device)
    resolved = loaded.resolved()
    if dist.is_main:
        write_text_atomic(run_dir / "recipe.yaml", yaml.safe_dump(resolved, sort_keys=False))
        write_text_atomic(run_dir / "recipe.sha256", digest(resolved) + "\n")
        write_json_atomic(run_dir / "provenance.json", provenance(plugins, argv))

    log_name = "histo.log" if dist.is_main else f"histo.rank{dist.rank}.log"
    logger, handlers = open_run_log(run_dir / log_name, quiet=quiet or not dist.is_main)
    summary: dict[str, Any] = {
        "name": loaded.name,
        "recipe_sha256": digest(resolved),
        "started": _now(),
        "finished": None,
        "status": "running",
        "device": device,
        "world_size": dist.world_size,
        "stages": [],
    }

    def save_summary() -> None:
        if dist.is_main:
            write_json_atomic(run_dir / "summary.json", summary)

    try:
        logger.info("run %s -> %s (device %s)", loaded.name, run_dir, device)
        fingerprints: dict[str, str] = {}
        failed = False
        for stage in loaded.stages:
            if failed:
                summary["stages"].append({"id": stage.id, "stage": stage.entry.name, "status": "not run"})
                continue
            record = _run_stage(
                stage, loaded, run_dir, device, fingerprints, logger, quiet, dist, plugins, stage.id in forced
            )
            summary["stages"].append(record)
            save_summary()
            failed = record["status"] == "failed"
        summary["status"] = "failed" if failed else "done"
    finally:
        summary["finished"] = _now()
        if summary["status"] == "running":
            summary["status"] = "interrupted"
        summary["failures"] = sum(s.get("failures", 0) for s in summary["stages"])
        save_summary()
        logger.info("run %s: %s (summary in %s)", loaded.name, summary["status"], run_dir / "summary.json")
        close_run_log(logger, handlers)
    dist.close()  # not after an exception: the other ranks may never reach the barrier
    return RunResult(run_dir, summary)


def _run_stage(
    stage: ResolvedStage,
    loaded: LoadedRecipe,
    run_dir: Path,
    device: str,
    fingerprints: dict[str, str],
    logger: Any,
    quiet: bool,
    dist: DistEnv,
    plugins: Plugins,
    forced: bool = False,
) -> dict[str, Any]:
    stage_dir = run_dir / "stages" / stage.id
    try:
        instance = stage.entry.spec.factory(stage.config)
    except Exception as exc:  # a stage plugin whose constructor raises: name it, do not crash the run
        logger.debug("%s", traceback.format_exc())
        found = blame(exc, plugins, stage.components, str(run_dir / "histo.log"))
        logger.error("%s: %s", stage.id, found.message)
        return {"id": stage.id, "stage": stage.entry.name, "status": "failed", "error": found.message,
                "error_kind": found.kind}
    fingerprint = stage_fingerprint(
        stage=stage.entry.name,
        package=stage.entry.package,
        package_version=stage.entry.version,
        stage_version=str(getattr(instance, "version", "1")),
        params=stage.config.model_dump(mode="json"),
        seed=loaded.recipe.seed,
        upstream={sid: fingerprints[sid] for sid in stage.upstream},
        inputs=[p.resolve() for p in stage.input_paths],
        components=stage.component_sources,
        source=plugins.source_digest(stage.entry),
    )
    fingerprints[stage.id] = fingerprint
    record: dict[str, Any] = {"id": stage.id, "stage": stage.entry.name, "fingerprint": fingerprint}

    done_file = stage_dir / DONE
    dist.barrier()  # every rank sees the same stage folder
    if forced:
        logger.info("%s: rerun forced (--rerun)", stage.id)
    if done_file.exists() and getattr(instance, "cacheable", True) and not forced:
        previous = read_json(done_file)
        if previous.get("fingerprint") == fingerprint and previous.get("status") == "done":
            logger.info("%s: unchanged, reusing %s", stage.id, stage_dir)
            return {**previous, "status": "cached", "cached_from": previous.get("finished")}

    progress_file = stage_dir / IN_PROGRESS
    resumable = (
        not forced and progress_file.exists() and read_json(progress_file).get("fingerprint") == fingerprint
    )
    dist.barrier()  # all ranks decided before rank 0 changes the folder
    if dist.is_main:
        if stage_dir.exists() and not resumable:
            shutil.rmtree(stage_dir)  # outputs of another config: never mix them with this one's
        stage_dir.mkdir(parents=True, exist_ok=True)
        done_file.unlink(missing_ok=True)
        write_json_atomic(progress_file, {"fingerprint": fingerprint, "started": _now()})
    dist.barrier()
    if resumable:
        logger.info("%s: resuming an interrupted run of the same config", stage.id)

    ctx = StageContext(
        stage_id=stage.id,
        run_dir=run_dir,
        out_dir=stage_dir,
        seed=loaded.recipe.seed,
        device=device,
        strict=loaded.recipe.strict,
        log=logger,
        upstream={sid: run_dir / "stages" / sid for sid in stage.upstream},
        show_progress=not quiet and dist.is_main and sys.stderr.isatty(),
        rank=dist.rank, world_size=dist.world_size,
    )
    logger.info("%s: running stage %s", stage.id, stage.entry.name)
    start = time.monotonic()
    record["started"] = _now()
    try:
        environment_errors_fail(instance.run, ctx, stage_dir)  # a full disk is no bug: the stage fails
    except HistoError as exc:
        logger.error("%s: %s", stage.id, exc)
        kind = "environment" if isinstance(exc, EnvironmentFault) else "user"
        record.update(status="failed", error=str(exc), error_kind=kind)
    except Exception as exc:  # keep the traceback in the log; say whose code raised (see blame.py)
        logger.debug("%s", traceback.format_exc())
        found = blame(exc, plugins, stage.components, str(run_dir / "histo.log"))
        logger.error("%s: %s", stage.id, found.message)
        record.update(status="failed", error=found.message, error_kind=found.kind)
    else:
        record["status"] = "done"
    for line in summarise_failures(ctx.failures):
        logger.warning("%s: %s", stage.id, line)
    ranks_failed = dist.sum(int(record["status"] == "failed"))
    if ranks_failed and record["status"] == "done":
        record.update(status="failed", error=f"failed on {ranks_failed} other process(es); see their logs")
    record.update(
        finished=_now(),
        seconds=round(time.monotonic() - start, 3),
        metrics=ctx.metrics,
        failures=dist.sum(len(ctx.failures)),
        artifacts=ctx.artifacts,
    )
    if record["status"] == "done" and dist.is_main:
        write_json_atomic(done_file, record)
        progress_file.unlink(missing_ok=True)
    logger.info("%s: %s in %.1fs", stage.id, record["status"], record["seconds"])
    return record
