"""The `compare` stage: one table of test metrics (mean ± std over folds) across train or classical
stages, with each model's pooled out-of-fold metric and its bootstrap CI, and, for every pair of models
run on the same folds, per-fold differences, paired tests and a sentence saying whether the difference
is real (histo.plugins.evaluation.paired).

Used as the evaluation step of multi-stage recipes (teacher vs student vs distilled student vs classical
baselines), as the ablation table, and as the paper's comparison table (`reference`: every row's paired
p-value against one model). Writes `<table>.csv` and `<table>.json` (one row per stage), `<table>.md`
(the paper-style table), `<table>_pairs.csv` and `<table>_pairs.json` (every pair), and `compare.json`
(which files these are, for the report).
"""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from histo import ComponentSpec
from histo.errors import HistoError
from histo.interfaces import Stage, StageContext
from histo.io import atomic_path, write_json_atomic, write_text_atomic
from histo.recipe import StageRef

TABLE_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
PRIMARY = ("c_index", "auc")  # the metric the pooled CI and the sentences are about: the first found


class CompareConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stages: list[StageRef] = Field(
        min_length=1, description="train or classical stages to compare, in table order"
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="stage id -> row label (default: the id)"
    )
    metrics: list[str] | None = Field(None, description="metric columns (default: every metric found)")
    table: str = Field("comparison", description="file name of the table (e.g. ablation)")
    reference: StageRef | None = Field(
        None,
        description="one of `stages`: the table gets each row's paired p-values against it (the paper's "
        "'vs ours' column); every pair is tested either way",
    )
    bootstrap: int = Field(
        1000, ge=0, description="patient-level resamples of the pooled out-of-fold CIs (0: none)"
    )
    effects: dict[str, tuple[StageRef, StageRef]] = Field(
        default_factory=dict,
        description="ablation effects: component name -> [full method, the same with the component off] "
        "(both in `stages`); writes <table>_effects.csv/.md with the mean paired difference over folds, "
        "its t-interval and paired tests (histo.plugins.evaluation.effects)",
    )
    effect_metrics: list[str] | None = Field(
        None, description="metrics of the effects table (default: the primary, AUC or C-index)"
    )


class CompareStage(Stage[CompareConfig]):
    version = "2"

    def run(self, ctx: StageContext) -> None:
        import pandas as pd

        from histo.plugins.evaluation.bootstrap import pooled_summary
        from histo.plugins.evaluation.paired import Model, compare_pair

        config = self.config
        if not TABLE_NAME.match(config.table):
            raise HistoError(f"table name {config.table!r}: use lowercase letters, digits, '-' and '_'")
        if config.reference is not None and config.reference not in config.stages:
            raise HistoError(f"reference {config.reference!r} is not one of `stages` {config.stages}")
        for component, pair in config.effects.items():
            if any(stage not in config.stages for stage in pair):
                raise HistoError(
                    f"effects.{component}: {list(pair)} must both be among `stages` {config.stages}"
                )
        summaries, models = {}, []
        for stage_id in config.stages:
            folder = ctx.stage_dir(stage_id)
            path = folder / "metrics.json"
            if not path.exists():
                raise HistoError(
                    f"stage {stage_id!r} wrote no metrics.json: is it a train or classical stage?"
                )
            metrics = json.loads(path.read_text())
            summaries[stage_id] = metrics["summary"]
            folds = {int(f["fold"]): f.get("test") or {} for f in metrics.get("folds", [])}
            models.append(Model(stage_id, config.labels.get(stage_id, stage_id), folds, _predictions(folder)))
        names = config.metrics or sorted({m for s in summaries.values() for m in s})
        primary = next((m for m in PRIMARY if any(m in s for s in summaries.values())), None)

        rows: list[dict[str, Any]] = []
        for model in models:
            summary = summaries[model.id]
            row: dict[str, Any] = {"stage": model.id, "label": model.label}
            for metric in names:
                value = summary.get(metric)
                row[metric] = _format(value)
                row[f"{metric}_mean"] = value["mean"] if value else math.nan
                row[f"{metric}_std"] = value["std"] if value else math.nan
            pooled = (
                pooled_summary(model.predictions, config.bootstrap, ctx.seed)
                if not model.predictions.empty
                else {}
            )
            for metric, entry in pooled.items():
                row[f"{metric}_pooled"] = entry["estimate"]
                row[f"{metric}_ci_low"] = entry.get("low")
                row[f"{metric}_ci_high"] = entry.get("high")
                row[f"pooled {metric} (95% CI)"] = _format_ci(entry)
            rows.append(row)

        pairs = []
        for a, b in itertools.combinations(models, 2):
            for metric in names:
                is_primary = metric == primary
                test = compare_pair(
                    a, b, metric, n_resamples=config.bootstrap, seed=ctx.seed, primary=is_primary
                )
                pairs.append(test.record())
        if config.reference is not None:
            for row in rows:
                for metric in names:
                    row[f"{metric}_p_vs_reference"] = _p_vs(pairs, row["stage"], config.reference, metric)

        table = config.table
        frame = pd.DataFrame(rows)
        with atomic_path(ctx.out_dir / f"{table}.csv") as tmp:
            frame.to_csv(tmp, index=False)
        write_json_atomic(ctx.out_dir / f"{table}.json", _json_safe(rows))
        pair_frame = pd.DataFrame(pairs)
        with atomic_path(ctx.out_dir / f"{table}_pairs.csv") as tmp:
            pair_frame.to_csv(tmp, index=False)
        write_json_atomic(ctx.out_dir / f"{table}_pairs.json", _json_safe(pairs))
        labels = {m.id: m.label for m in models}
        write_text_atomic(
            ctx.out_dir / f"{table}.md", markdown_table(rows, pairs, names, primary, config.reference, labels)
        )
        effects = self._effects(ctx, models, primary)
        write_json_atomic(ctx.out_dir / "compare.json", {
            "table": f"{table}.csv", "rows": f"{table}.json", "pairs": f"{table}_pairs.json",
            "markdown": f"{table}.md", "metrics": names, "primary": primary, "reference": config.reference,
            "labels": labels, "bootstrap": config.bootstrap, "effects": effects,
        })  # fmt: skip
        ctx.add_artifact(ctx.out_dir / f"{table}.csv", "test metrics, mean ± std over folds, pooled with CI")
        ctx.add_artifact(ctx.out_dir / f"{table}_pairs.csv", "every pair: per-fold differences, paired tests")
        ctx.add_artifact(ctx.out_dir / f"{table}.md", "the comparison as a paper-style Markdown table")
        shown = ["label", *[c for c in frame.columns if "±" in str(frame[c].iloc[0])]]
        ctx.log.info("%s: %s (test metrics, mean ± std over folds):", ctx.stage_id, table)
        cells = [[str(value) for value in row] for row in frame[shown].itertuples(index=False)]
        for line in table_lines(shown, cells):
            ctx.log.info("%s", line)
        for pair in pairs:
            if pair["sentence"]:
                ctx.log.info("%s", pair["sentence"])


    def _effects(self, ctx: StageContext, models: list[Any], primary: str | None) -> str | None:
        """Write <table>_effects.csv/.json/.md when the recipe names components; returns the csv name."""
        import pandas as pd

        from histo.plugins.evaluation.effects import component_effect, effects_markdown

        config = self.config
        if not config.effects:
            return None
        by_id = {model.id: model for model in models}
        metrics = config.effect_metrics or ([primary] if primary else [])
        rows = [
            component_effect(
                name, by_id[full], by_id[off], metric, n_resamples=config.bootstrap, seed=ctx.seed
            )
            for metric in metrics
            for name, (full, off) in config.effects.items()
        ]
        table = config.table
        with atomic_path(ctx.out_dir / f"{table}_effects.csv") as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
        write_json_atomic(ctx.out_dir / f"{table}_effects.json", _json_safe(rows))
        write_text_atomic(ctx.out_dir / f"{table}_effects.md", effects_markdown(rows))
        ctx.add_artifact(ctx.out_dir / f"{table}_effects.csv", "each component's effect, CI, paired tests")
        for row in rows:
            ctx.log.info(
                "%s (%s): effect %+.3f, 95%% CI %+.3f to %+.3f, paired t p=%.2g, n=%d: %s",
                row["component"], row["metric"], row["effect"], row["ci_low"], row["ci_high"], row["t_p"],
                row["n"], row["verdict"],
            )  # fmt: skip
        return f"{table}_effects.csv"


def _predictions(folder: Path) -> Any:
    import pandas as pd

    path = folder / "predictions.csv"
    if not path.exists():
        return pd.DataFrame()
    return pd.read_csv(path, dtype={"patient_id": str})


def _p_vs(pairs: list[dict[str, Any]], stage: str, reference: str, metric: str) -> float | None:
    if stage == reference:
        return None
    for pair in pairs:
        if pair["metric"] == metric and {pair["a"], pair["b"]} == {stage, reference}:
            return pair["t_p"] if isinstance(pair["t_p"], float) else None
    return None


def markdown_table(
    rows: list[dict[str, Any]], pairs: list[dict[str, Any]], metrics: list[str], primary: str | None,
    reference: str | None, labels: dict[str, str],
) -> str:  # fmt: skip
    """The paper's comparison table: mean ± std over folds per metric, the pooled primary metric with its
    CI, and (with a reference) paired t-test p-values against it; then every pair's sentence."""
    headers = ["model", *metrics]
    if primary is not None:
        headers.append(f"pooled {primary} (95% CI)")
    if reference is not None:
        headers += [f"p vs {labels[reference]} ({m})" for m in metrics]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        cells = [str(row["label"]), *[str(row.get(m, "n/a")) for m in metrics]]
        if primary is not None:
            cells.append(str(row.get(f"pooled {primary} (95% CI)", "n/a")))
        if reference is not None:
            cells += [_p_text(row.get(f"{m}_p_vs_reference"), row["stage"] == reference) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    folds = max((len(p["folds"]) for p in pairs), default=0)
    lines += ["", f"Mean ± sample std over {folds} test folds; p: two-sided paired t-test across folds."]
    sentences = [p["sentence"] for p in pairs if p.get("sentence")]
    if sentences:
        lines += ["", *[f"- {s}" for s in sentences]]
    return "\n".join(lines) + "\n"


def _p_text(value: Any, is_reference: bool) -> str:
    if is_reference:
        return "—"
    return f"{value:.2g}" if isinstance(value, float) and math.isfinite(value) else "n/a"


def table_lines(header: list[str], rows: list[list[str]]) -> list[str]:
    """A plain-text table (header, rule, rows) with aligned columns, one log line per row."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return " | ".join(str(cell).ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    return [line(header), "-+-".join("-" * width for width in widths), *(line(row) for row in rows)]


def _format(value: dict[str, float] | None) -> str:
    return f"{value['mean']:.3f} ± {value['std']:.3f}" if value else "n/a"


def _format_ci(entry: dict[str, Any]) -> str:
    estimate, low, high = entry.get("estimate"), entry.get("low"), entry.get("high")
    if estimate is None:
        return "n/a"
    if low is None or high is None:
        return f"{estimate:.3f}"
    return f"{estimate:.3f} ({low:.3f} to {high:.3f})"


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


SPEC = ComponentSpec(
    "compare",
    CompareStage,
    CompareConfig,
    "one table of test metrics across stages: mean ± std, pooled CIs, paired tests between every pair",
)
