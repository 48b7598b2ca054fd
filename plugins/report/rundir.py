"""Reading a run directory as the runner left it (see histo.run.runner), finished or still running.

The report stage runs inside the run it reports on, before the runner writes the final summary.json:
`load_run(..., building=<its stage id>)` then merges the summary written so far with the recipe's
stage order, so the stages after it show as pending rather than missing. When the report stage is
the recipe's last and everything before it succeeded, the run ends with it: the page says "done".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from histo.errors import HistoError


@dataclass
class StageInfo:
    """One stage of the run, as summary.json (or the recipe, for stages not yet run) describes it."""

    id: str
    plugin: str
    status: str
    folder: Path
    seconds: float | None = None
    failures: int = 0
    error: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)  # path relative to the run dir -> description
    cached_from: str | None = None

    @property
    def ran(self) -> bool:
        return self.status in ("done", "cached", "failed")


@dataclass
class RunInfo:
    root: Path
    name: str
    status: str
    started: str | None
    finished: str | None
    device: str | None
    stages: list[StageInfo]
    provenance: dict[str, Any]
    recipe_text: str
    building: str | None = None  # the stage that is writing the report inside the run, if any


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and ((path / "summary.json").is_file() or (path / "recipe.yaml").is_file())


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HistoError(f"{path} is not valid JSON ({exc}); was the run directory edited by hand?") from exc
    return data if isinstance(data, dict) else {}


def _recipe(path: Path) -> tuple[str, dict[str, Any]]:
    if not path.is_file():
        return "", {}
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise HistoError(f"{path} is not valid YAML ({exc}); was the run directory edited by hand?") from exc
    return text, data if isinstance(data, dict) else {}


def _stage(root: Path, record: dict[str, Any]) -> StageInfo:
    stage_id = str(record.get("id", "?"))
    artifacts = record.get("artifacts") or {}
    return StageInfo(
        id=stage_id,
        plugin=str(record.get("stage", "")),
        status=str(record.get("status", "unknown")),
        folder=root / "stages" / stage_id,
        seconds=record.get("seconds") if isinstance(record.get("seconds"), int | float) else None,
        failures=int(record.get("failures") or 0),
        error=str(record.get("error") or ""),
        metrics=dict(record.get("metrics") or {}),
        artifacts={str(k): str(v) for k, v in artifacts.items()} if isinstance(artifacts, dict) else {},
        cached_from=record.get("cached_from"),
    )


def load_run(run_dir: Path | str, building: str | None = None) -> RunInfo:
    """The run in `run_dir`; `building` names the stage writing the report from inside the run."""
    root = Path(run_dir)
    if not is_run_dir(root):
        raise HistoError(
            f"{root} is not a run directory (it has no summary.json or recipe.yaml); "
            "give the --out folder of a `histo run`"
        )
    summary = _json(root / "summary.json")
    recipe_text, recipe = _recipe(root / "recipe.yaml")
    order: list[tuple[str, str]] = [
        (str(sid), str((entry or {}).get("stage", ""))) for sid, entry in (recipe.get("stages") or {}).items()
    ]
    records = [r for r in summary.get("stages") or [] if isinstance(r, dict)]
    status = str(summary.get("status") or "unknown")
    started, finished = summary.get("started"), summary.get("finished")
    if building is not None:
        if any(r.get("id") == building for r in records):
            # this stage is already in summary.json: the file is a previous run's (the current run has
            # not saved one yet), so none of its records describes this run
            records, started = [], None
        status, finished = "running", None
        if _finishes_run(building, order, records):
            status, finished = "done", _now()
    stages = [_stage(root, r) for r in records]
    known = {s.id for s in stages}
    for stage_id, plugin in order:
        if stage_id in known:
            continue
        pending = "pending"
        if stage_id == building:
            pending = "done (wrote this report)" if status == "done" else "running (writing this report)"
        stages.append(
            StageInfo(stage_id, plugin, pending if building else "not run", root / "stages" / stage_id)
        )
    if order:  # the recipe's order, whatever order the records came in
        position = {sid: i for i, (sid, _) in enumerate(order)}
        stages.sort(key=lambda s: position.get(s.id, len(position)))
    return RunInfo(
        root=root,
        name=str(summary.get("name") or recipe.get("name") or root.name),
        status=status,
        started=started,
        finished=finished,
        device=summary.get("device"),
        stages=stages,
        provenance=_json(root / "provenance.json"),
        recipe_text=recipe_text,
        building=building,
    )


def _finishes_run(building: str, order: list[tuple[str, str]], records: list[dict[str, Any]]) -> bool:
    """True when the report stage is the recipe's last and every stage before it succeeded: the run
    ends with this stage, so the page written now describes the finished run (not one "running")."""
    before = [sid for sid, _ in order[:-1]]
    if not order or order[-1][0] != building:
        return False
    statuses = {str(r.get("id")): r.get("status") for r in records}
    return all(statuses.get(sid) in ("done", "cached") for sid in before)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_failures(stage: StageInfo) -> list[dict[str, Any]]:
    """The stage's failures.jsonl records (a line cut short by a killed run is skipped)."""
    path = stage.folder / "failures.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
