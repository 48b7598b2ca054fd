"""Sections for the files histo's own stages write: richer than the generic view of an artifact.

Each function looks at one stage's folder and returns HTML (or "") and the run-relative paths it
has shown, so the generic artifact view does not show them twice. A file that is missing or not in
the expected shape is simply left to the generic view.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .comparison import comparison_section, mean_interval, pooled_text
from .html import esc, figure, fmt, key_values, paragraph, plural, table
from .images import data_uri
from .rundir import RunInfo, StageInfo
from .tables import csv_table, json_block, json_table, records_table
from .verdict import chance_verdict

QC_MAX = 24  # QC thumbnails shown per tile stage
HEATMAPS_MAX = 48  # heatmap images shown per stage
THUMB_SIDE = 520  # display size of slide pictures in a grid, pixels
HEATMAP_SIDE = 900
LIST_MAX = 20  # ids listed per "who lacks what" line
TRAIN_PLOTS = ("km_risk_groups.png", "roc.png", "confusion.png")

Section = tuple[str, set[str]]


def _rel(run: RunInfo, path: Path) -> str:
    return path.relative_to(run.root).as_posix()


def load_json(path: Path) -> Any:
    """The JSON in `path`, or None when it is missing or unreadable (the generic view then shows it)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# -- train: metrics, verdict, plots, cohort ---------------------------------------------------------
def metrics_section(run: RunInfo, stage: StageInfo) -> Section:
    path = stage.folder / "metrics.json"
    metrics = load_json(path)
    if not isinstance(metrics, dict) or not isinstance(metrics.get("folds"), list):
        return "", set()
    folds = [f for f in metrics["folds"] if isinstance(f, dict)]
    summary: dict[str, Any] = metrics["summary"] if isinstance(metrics.get("summary"), dict) else {}
    names = list(summary) or sorted({k for f in folds for k in (f.get("test") or {})})
    classical = any(isinstance(f.get("chosen"), dict) for f in folds)
    headers = ["fold", "train", "val", "test", "chosen" if classical else "best epoch", *names]
    rows = [
        [
            f.get("fold"),
            f.get("n_train"),
            f.get("n_val"),
            f.get("n_test"),
            _chosen(f.get("chosen")) if classical else f.get("best_epoch"),
            *[(f.get("test") or {}).get(n) for n in names],
        ]
        for f in folds
    ]
    mean_row = ["mean ± std", "", "", "", ""] + [_mean_std(summary.get(n)) for n in names]
    interval_row = ["95% CI of the mean (t)", "", "", "", ""] + [mean_interval(summary.get(n)) for n in names]
    pooled = metrics.get("pooled") if isinstance(metrics.get("pooled"), dict) else {}
    pooled_row = ["pooled out-of-fold (95% bootstrap CI)", "", "", "", ""] + [
        pooled_text(pooled.get(n)) for n in names
    ]
    parts = [f"<h3>Test metrics{' (' + esc(metrics['task']) + ')' if metrics.get('task') else ''}</h3>"]
    verdict = chance_verdict(summary)
    if verdict is not None:
        parts.append(f'<p class="verdict {esc(verdict.level)}">{esc(verdict.text)}</p>')
    summary_rows = [mean_row, interval_row] + ([pooled_row] if pooled else [])
    parts.append(table(headers, rows, summary_rows=summary_rows))
    selected = {str(f.get("selected_on")) for f in folds if f.get("selected_on")}
    if selected and classical:
        parts.append(
            paragraph(
                f"Each fold's hyperparameters were chosen by {', '.join(sorted(selected))} on its training "
                "patients only; metrics are on its test patients.",
                "note",
            )
        )
    elif selected:
        parts.append(
            paragraph(
                f"Each fold's epoch was selected on {', '.join(sorted(selected))}; metrics are on its test "
                "patients only.",
                "note",
            )
        )
    notes = sorted({str(n) for f in folds for n in f.get("notes") or []})
    if notes:
        parts.append('<ul class="note">' + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    return "".join(parts), {_rel(run, path)}


def _chosen(chosen: Any) -> str:
    if not isinstance(chosen, dict):
        return ""
    return ", ".join(f"{k} {fmt(v, 3) if isinstance(v, float) else v}" for k, v in chosen.items())


def _mean_std(entry: Any) -> str:
    if not isinstance(entry, dict) or not isinstance(entry.get("mean"), int | float):
        return "—"
    return f"{fmt(entry['mean'], 3)} ± {fmt(entry.get('std') or 0.0, 2)}"


def train_plots_section(run: RunInfo, stage: StageInfo) -> Section:
    shown, figures = set(), []
    for name in TRAIN_PLOTS:
        path = stage.folder / name
        if path.is_file():
            rel = _rel(run, path)
            figures.append(figure(data_uri(path), stage.artifacts.get(rel, name)))
            shown.add(rel)
    if not figures:
        return "", set()
    return '<h3>Out-of-fold plots</h3><div class="plots">' + "".join(figures) + "</div>", shown


def cohort_section(run: RunInfo, stage: StageInfo) -> Section:
    path = stage.folder / "cohort_report.json"
    report = load_json(path)
    if not isinstance(report, dict) or not isinstance(report.get("cohort"), dict):
        return "", set()
    cohort = report["cohort"]
    parts = ["<h3>Cohort</h3>"]
    parts.append(
        key_values(
            [
                ("cohort table", cohort.get("file")),
                ("patients", cohort.get("patients")),
                ("usable patients", report.get("usable_patients")),
                ("slides", cohort.get("slides")),
                ("patients with several slides", cohort.get("patients_with_several_slides")),
            ]
        )
    )
    label = report.get("label")
    if isinstance(label, dict) and isinstance(label.get("classes"), dict):
        parts.append(f"<h4>Classes ({esc(label.get('column', ''))})</h4>")
        parts.append(table(["class", "patients"], list(label["classes"].items())))
    survival = report.get("survival")
    if isinstance(survival, dict):
        unit = survival.get("time_unit") or ""
        parts.append("<h4>Survival</h4>")
        parts.append(
            key_values(
                [
                    ("events", survival.get("events")),
                    ("censored", survival.get("censored")),
                    (f"follow-up ({unit})" if unit else "follow-up", _range(survival)),
                ]
            )
        )
    parts.append(_modalities(report.get("modalities")))
    omics = report.get("omics")
    if isinstance(omics, dict):
        parts.append("<h4>Expression table</h4>")
        parts.append(
            key_values(
                [
                    ("file", omics.get("file")),
                    ("patients", omics.get("patients")),
                    ("genes", omics.get("genes")),
                ]
            )
        )
        groups = omics.get("groups")
        if isinstance(groups, dict) and groups:
            parts.append(json_table(groups) or json_block(groups))
    exclusions = report.get("exclusions")
    parts.append(f"<h4>Exclusions ({len(exclusions) if isinstance(exclusions, list) else 0})</h4>")
    if isinstance(exclusions, list) and exclusions:
        parts.append(records_table([e for e in exclusions if isinstance(e, dict)]))
    else:
        parts.append(paragraph("No row of the cohort table was excluded.", "note"))
    return "".join(parts), {_rel(run, path)}


def _range(survival: dict[str, Any]) -> str:
    values = [survival.get(k) for k in ("time_min", "time_median", "time_max")]
    if not all(isinstance(v, int | float) for v in values):
        return ""
    return f"{fmt(values[0], 3)} to {fmt(values[2], 3)} (median {fmt(values[1], 3)})"


MODALITY_LABELS = {
    "no_slides": "patients without slides",
    "no_omics": "patients without an expression row",
    "omics_not_in_cohort": "expression rows of patients not in the cohort",
    "no_features": "patients without feature bags",
    "slides_without_features": "slides without feature bags",
}


def _modalities(modalities: Any) -> str:
    if not isinstance(modalities, dict):
        return ""
    rows = []
    if isinstance(modalities.get("complete"), int):
        rows.append(["patients with every modality", modalities["complete"], ""])
    for key, value in modalities.items():
        if isinstance(value, list):
            listed = ", ".join(str(v) for v in value[:LIST_MAX])
            if len(value) > LIST_MAX:
                listed += f", … and {len(value) - LIST_MAX} more"
            rows.append([MODALITY_LABELS.get(key, key.replace("_", " ")), len(value), listed])
    if not rows:
        return ""
    return "<h4>Who lacks which modality</h4>" + table(["", "count", "who"], rows)


# -- tile: QC thumbnails ----------------------------------------------------------------------------
def qc_section(run: RunInfo, stage: StageInfo) -> Section:
    folder = stage.folder / "qc"
    pictures = sorted(folder.glob("*.png")) if folder.is_dir() else []
    if not pictures:
        return "", set()
    rows = _csv_rows(stage.folder / "slides.csv")
    figures = []
    for path in pictures[:QC_MAX]:
        row = rows.get(path.stem, {})
        counts = ", ".join(
            f"{k[len('patches_') :]} {v}" for k, v in row.items() if k.startswith("patches_") and v
        )
        mpp = f"mpp {row['mpp']} ({row.get('mpp_source', '')})" if row.get("mpp") else ""
        caption = " · ".join(x for x in (path.stem, counts, mpp) if x)
        figures.append(
            figure(data_uri(path, THUMB_SIDE, photo=True), caption, alt=f"QC of slide {path.stem}")
        )
    parts = [
        f"<h3>QC thumbnails ({plural(len(pictures), 'slide')})</h3>",
        '<div class="grid">',
        *figures,
        "</div>",
    ]
    if len(pictures) > QC_MAX:
        parts.append(
            paragraph(f"first {QC_MAX} of {len(pictures)} shown; all are in {_rel(run, folder)}/", "note")
        )
    shown = {_rel(run, folder)} | {_rel(run, p) for p in pictures}
    return "".join(parts), shown


def _csv_rows(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        return {row.get("slide_id", ""): row for row in csv.DictReader(fh)}


# -- heatmaps ---------------------------------------------------------------------------------------
def heatmaps_section(run: RunInfo, stage: StageInfo) -> Section:
    folder = stage.folder / "heatmaps"
    index = load_json(folder / "index.json")
    if not isinstance(index, list):
        return "", set()
    records = [r for r in index if isinstance(r, dict) and (stage.folder / str(r.get("file", ""))).is_file()]
    if not records:
        return "", set()
    by_slide: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_slide.setdefault(str(record.get("slide")), []).append(record)
    parts = [f"<h3>Attention heatmaps ({plural(len(by_slide), 'slide')})</h3>"]
    shown = 0
    for slide, items in by_slide.items():
        if shown >= HEATMAPS_MAX:
            break
        parts.append(f'<h4>{esc(slide)}</h4><div class="plots">')
        for record in items[: HEATMAPS_MAX - shown]:
            path = stage.folder / str(record["file"])
            caption = (
                f"{record.get('magnification')} · {record.get('name')} · {record.get('patches')} patches"
            )
            parts.append(
                figure(
                    data_uri(path, HEATMAP_SIDE, photo=True), caption, alt=f"heatmap of {slide}: {caption}"
                )
            )
            shown += 1
        parts.append("</div>")
    if shown < len(records):
        parts.append(
            paragraph(
                f"first {shown} of {len(records)} heatmaps shown; all are in {_rel(run, folder)}/", "note"
            )
        )
    claimed = {_rel(run, folder), _rel(run, folder / "index.json")}
    claimed |= {_rel(run, stage.folder / str(r["file"])) for r in records}
    return "".join(parts), claimed


# -- ablations --------------------------------------------------------------------------------------
def ablation_section(run: RunInfo, stage: StageInfo) -> Section:
    """ablation.csv, else ablation.json (the compare stage writes both, with the same rows)."""
    if (stage.folder / "compare.json").is_file():  # the comparison section shows it, with its tests
        return "", set()
    csv_path, json_path = stage.folder / "ablation.csv", stage.folder / "ablation.json"
    shown = {_rel(run, p) for p in (csv_path, json_path) if p.is_file()}
    if csv_path.is_file():
        body = csv_table(csv_path, _rel(run, csv_path))
        source = csv_path.name
    elif json_path.is_file():
        data = load_json(json_path)
        body = json_table(data) or json_block(data)
        source = json_path.name
    else:
        return "", set()
    return f"<h3>Ablation ({esc(source)})</h3>{body}", shown


KNOWN: tuple[Callable[[RunInfo, StageInfo], Section], ...] = (
    metrics_section,
    train_plots_section,
    cohort_section,
    comparison_section,
    ablation_section,
    qc_section,
    heatmaps_section,
)
