"""The `synthesize` stage's `scenario: planted` branch: generate, write, record (planted.py generates)."""

from __future__ import annotations

import time
from typing import Any

from histo.errors import HistoError
from histo.interfaces import StageContext
from histo.run import raise_if_environment

from .planted import LABELS, MAGNIFICATIONS, make_planted, write_planted
from .planted_config import PlantedConfig


def run_planted(cfg: PlantedConfig, ctx: StageContext, version: str) -> None:
    from histo.io import write_json_atomic

    started = time.monotonic()
    cohort = make_planted(cfg, ctx.seed)
    if ctx.is_main:
        try:
            tables = write_planted(
                cohort, ctx.out_dir, {"generator": "histo synthesize (planted)", "seed": ctx.seed}
            )
        except OSError as exc:
            raise_if_environment(exc, ctx.out_dir)
            raise HistoError(f"could not write the planted benchmark under {ctx.out_dir}: {exc}") from exc
        manifest: dict[str, Any] = {
            "generator": "histo synthesize",
            "scenario": "planted",
            "stage_version": version,
            "seed": ctx.seed,
            "params": cfg.model_dump(mode="json"),
            "labels": {"planted": list(LABELS)},
            "counts": {
                "patients": len(cohort.patient_ids),
                "seeds": cfg.seeds,
                "discordant": sum(y == LABELS[1] for y in cohort.label),
            },
            "files": {
                **{name: path.name for name, path in tables.items()},
                "splits": [f"splits/splits_{k}.csv" for k in range(cfg.seeds)],
                "features": [f"features/{mag}" for mag in MAGNIFICATIONS],
            },
        }
        write_json_atomic(ctx.out_dir / "manifest.json", manifest)
        for name, path in tables.items():
            ctx.add_artifact(path, f"planted benchmark: {name}")
        ctx.add_artifact(ctx.out_dir / "features", "planted benchmark: feature bags at 10x and 20x")
        ctx.add_artifact(ctx.out_dir / "splits", "planted benchmark: one train/val/test split per seed")
    ctx.barrier()
    ctx.add_metrics(
        patients=len(cohort.patient_ids), seeds=cfg.seeds, seconds=round(time.monotonic() - started, 2)
    )
