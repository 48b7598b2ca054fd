"""Report parts about uncertainty: the compare stage's table with pooled CIs and paired tests, and the
confidence interval of a fold mean that every train or classical stage's metrics table carries."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .html import esc, fmt, paragraph, table
from .rundir import RunInfo, StageInfo

Section = tuple[str, set[str]]


def mean_interval(entry: Any, level: float = 0.95) -> str:
    """The t-interval of a fold mean, 'low to high', from a summary entry {mean, std, folds}."""
    if not isinstance(entry, dict) or not isinstance(entry.get("mean"), int | float):
        return "—"
    folds = int(entry.get("folds") or 0)
    if folds < 2:
        return "— (1 fold)"
    from scipy import stats

    half = float(stats.t.ppf(0.5 + level / 2, folds - 1)) * float(entry.get("std") or 0.0) / math.sqrt(folds)
    return f"{fmt(entry['mean'] - half, 3)} to {fmt(entry['mean'] + half, 3)}"


def pooled_text(entry: Any) -> str:
    if not isinstance(entry, dict) or not isinstance(entry.get("estimate"), int | float):
        return "—"
    low, high = entry.get("low"), entry.get("high")
    if not isinstance(low, int | float) or not isinstance(high, int | float):
        return fmt(entry["estimate"], 3)
    return f"{fmt(entry['estimate'], 3)} ({fmt(low, 3)} to {fmt(high, 3)})"


def _load(path: Path) -> Any:
    from .known import load_json

    return load_json(path)


def sentences(stage: StageInfo) -> list[str]:
    """The compare stage's sentences about its pairs (for the findings), or []."""
    index = _load(stage.folder / "compare.json")
    if not isinstance(index, dict):
        return []
    pairs = _load(stage.folder / str(index.get("pairs", "")))
    if not isinstance(pairs, list):
        return []
    return [str(p["sentence"]) for p in pairs if isinstance(p, dict) and p.get("sentence")]


def comparison_section(run: RunInfo, stage: StageInfo) -> Section:
    index = _load(stage.folder / "compare.json")
    if not isinstance(index, dict):
        return "", set()
    rows = _load(stage.folder / str(index.get("rows", "")))
    pairs = _load(stage.folder / str(index.get("pairs", "")))
    if not isinstance(rows, list) or not isinstance(pairs, list):
        return "", set()
    metrics = [str(m) for m in index.get("metrics") or []]
    primary = index.get("primary")
    labels = index.get("labels") if isinstance(index.get("labels"), dict) else {}
    reference = index.get("reference")
    headers = ["model", *metrics]
    if primary:
        headers.append(f"pooled out-of-fold {primary} (95% bootstrap CI)")
    if reference:
        headers += [f"p vs {labels.get(reference, reference)} ({m})" for m in metrics]
    body = []
    for row in rows:
        if not isinstance(row, dict):
            continue
        cells: list[Any] = [row.get("label"), *[row.get(m, "n/a") for m in metrics]]
        if primary:
            cells.append(row.get(f"pooled {primary} (95% CI)", "n/a"))
        if reference:
            cells += [
                "—" if row.get("stage") == reference else _p(row.get(f"{m}_p_vs_reference")) for m in metrics
            ]
        body.append(cells)
    folds = max((len(p.get("folds") or []) for p in pairs if isinstance(p, dict)), default=0)
    parts = [
        f"<h3>Comparison ({esc(index.get('table', ''))})</h3>",
        table(headers, body),
        paragraph(
            f"Mean ± sample std over {folds} test folds. The pooled metric ranks every patient's out-of-fold "
            f"prediction (survival risks centred on each fold's training median) with a 95% CI from "
            f"{index.get('bootstrap')} patient-level bootstrap resamples; p: two-sided paired t-test across "
            "folds.",
            "note",
        ),
    ]
    said = [p for p in pairs if isinstance(p, dict) and p.get("sentence")]
    if said:
        parts.append("<h4>Which differences are real</h4>")
        for pair in said:
            level = (
                "above"
                if " is better than " in pair["sentence"] or " is worse than " in pair["sentence"]
                else "chance"
            )
            parts.append(f'<p class="verdict {level}">{esc(pair["sentence"])}</p>')
    detail_rows = [
        [
            labels.get(p.get("a"), p.get("a")), labels.get(p.get("b"), p.get("b")), p.get("metric"),
            ", ".join(f"{d:+.3f}" for d in p.get("differences") or []),
            p.get("mean_difference"), _p(p.get("t_p")), _p(p.get("wilcoxon_p")),
        ]
        for p in pairs if isinstance(p, dict)
    ]  # fmt: skip
    parts.append("<h4>Every pair, every metric</h4>")
    parts.append(
        table(["a", "b", "metric", "per-fold a - b", "mean a - b", "paired t p", "Wilcoxon p"], detail_rows)
    )
    files = [index.get(k) for k in ("table", "rows", "pairs", "markdown")] + ["compare.json"]
    pair_csv = str(index.get("pairs", "")).replace(".json", ".csv")
    shown = {(stage.folder / str(f)).relative_to(run.root).as_posix() for f in [*files, pair_csv] if f}
    return "".join(parts), shown


def _p(value: Any) -> str:
    return f"{value:.2g}" if isinstance(value, int | float) and math.isfinite(value) else "n/a"
