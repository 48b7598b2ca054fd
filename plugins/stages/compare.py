"""The `compare` stage: one table of test metrics (mean ± std over folds) across train stages.

Used as the evaluation step of multi-stage recipes (teacher vs student vs distilled student) and as
the ablation table (the full method and each component switched off). Writes `<table>.csv` and
`<table>.json` with one row per stage.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from histo import ComponentSpec
from histo.errors import HistoError
from histo.interfaces import Stage, StageContext
from histo.io import atomic_path, write_json_atomic
from histo.recipe import StageRef

TABLE_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


class CompareConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stages: list[StageRef] = Field(min_length=1, description="train stages to compare, in table order")
    labels: dict[str, str] = Field(
        default_factory=dict, description="stage id -> row label (default: the id)"
    )
    metrics: list[str] | None = Field(None, description="metric columns (default: every metric found)")
    table: str = Field("comparison", description="file name of the table (e.g. ablation)")


class CompareStage(Stage[CompareConfig]):
    def run(self, ctx: StageContext) -> None:
        import pandas as pd

        if not TABLE_NAME.match(self.config.table):
            raise HistoError(f"table name {self.config.table!r}: use lowercase letters, digits, '-' and '_'")
        rows: list[dict[str, Any]] = []
        for stage_id in self.config.stages:
            path = ctx.stage_dir(stage_id) / "metrics.json"
            if not path.exists():
                raise HistoError(f"stage {stage_id!r} wrote no metrics.json: is it a train stage?")
            summary = json.loads(path.read_text())["summary"]
            row: dict[str, Any] = {"stage": stage_id, "label": self.config.labels.get(stage_id, stage_id)}
            for metric in self.config.metrics or sorted(summary):
                value = summary.get(metric)
                row[metric] = _format(value)
                row[f"{metric}_mean"] = value["mean"] if value else math.nan
                row[f"{metric}_std"] = value["std"] if value else math.nan
            rows.append(row)
        frame = pd.DataFrame(rows)
        with atomic_path(ctx.out_dir / f"{self.config.table}.csv") as tmp:
            frame.to_csv(tmp, index=False)
        write_json_atomic(ctx.out_dir / f"{self.config.table}.json", rows)
        ctx.add_artifact(
            ctx.out_dir / f"{self.config.table}.csv", "test metrics, mean ± std over folds, per stage"
        )
        shown = ["label", *[c for c in frame.columns if "±" in str(frame[c].iloc[0])]]
        ctx.log.info("%s: %s (test metrics, mean ± std over folds):", ctx.stage_id, self.config.table)
        cells = [[str(value) for value in row] for row in frame[shown].itertuples(index=False)]
        for line in table_lines(shown, cells):
            ctx.log.info("%s", line)


def table_lines(header: list[str], rows: list[list[str]]) -> list[str]:
    """A plain-text table (header, rule, rows) with aligned columns, one log line per row."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return " | ".join(str(cell).ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    return [line(header), "-+-".join("-" * width for width in widths), *(line(row) for row in rows)]


def _format(value: dict[str, float] | None) -> str:
    return f"{value['mean']:.3f} ± {value['std']:.3f}" if value else "n/a"


SPEC = ComponentSpec(
    "compare", CompareStage, CompareConfig, "one table of test metrics (mean ± std) across train stages"
)
