"""The HTML run report: built inside a real run and by `histo report`, self-contained, escaped, and
saying plainly whether learning is above chance; generic artifacts of any stage; run-dir edge cases."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from histo.cli import main
from histo.errors import HistoError
from histo.io import read_json
from histo.plugins.report import build_report
from histo.plugins.report.rundir import load_run
from histo.plugins.report.verdict import chance_verdict

SCRIPT_SLIDE = "<script>alert(1)<script>"  # a file name may not hold "/", so no closing tag here
SCRIPT_COHORT = "<script>alert(2)</script>"
CMU = "cmu-1-small-region"


def make_bags(root: Path, patients: int = 12) -> tuple[Path, Path]:
    """Feature bags with the handcrafted extractor's width (so the model also runs on real slides)."""
    import h5py

    from histo.plugins.extractors.handcrafted import FEATURE_NAMES

    rng = np.random.default_rng(0)
    rows = []
    for mag in ("10x", "20x"):
        (root / "bags" / "features" / mag).mkdir(parents=True)
    for i in range(patients):
        label = i % 2
        for mag, n in (("10x", 4), ("20x", 8)):
            with h5py.File(root / "bags" / "features" / mag / f"S{i:02d}.h5", "w") as h5:
                h5["features"] = (rng.normal(size=(n, len(FEATURE_NAMES))) + label).astype(np.float32)
                h5["coords"] = rng.integers(0, 5000, size=(n, 2))
        rows.append([f"P{i:02d}", f"S{i:02d}", ["benign", "tumour"][label]])
    rows.append(["P99", SCRIPT_COHORT, "tumour"])  # has no bag: recorded as skipped
    cohort = root / "cohort.csv"
    with cohort.open("w", newline="") as fh:
        csv.writer(fh).writerows([["patient_id", "slide_id", "diagnosis"], *rows])
    return root / "bags", cohort


RECIPE = """\
name: report-test
seed: 2
stages:
  tile:
    stage: tile
    params: {{slides: {slides}, magnifications: [10x, 20x]}}
  extract:
    stage: extract
    params: {{tiles: tile, extractor: {{name: handcrafted, params: {{input_size: 32}}}}, num_workers: 0}}
  train:
    stage: train
    params:
      cohort: {{table: {cohort}, label_column: diagnosis}}
      features: {{folder: {bags}}}
      task: {{name: classification, params: {{column: diagnosis, classes: [benign, tumour]}}}}
      model: {{slide_encoder: {{name: abmil, params: {{hidden: 8, attention_dim: 4}}}}}}
      splits: {{folds: 3, stratify: label}}
      training: {{epochs: 2, batch_size: 4, selection: {{protocol: holdout}}}}
  predict:
    stage: predict
    params: {{model: {run}/stages/train, features: {{stage: extract}}}}
  heatmaps:
    stage: heatmaps
    params: {{predictions: predict, tiles: tile, thumbnail_size: 256}}
  report:
    stage: report
"""


@pytest.fixture(scope="module")
def real_run(slides_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tile (a real slide and a broken one) -> extract -> train -> predict -> heatmaps -> report."""
    root = tmp_path_factory.mktemp("report")
    slides = root / "slides"
    slides.mkdir()
    (slides / f"{CMU}.svs").symlink_to(slides_dir / f"{CMU}.svs")
    (slides / f"{SCRIPT_SLIDE}.svs").symlink_to(slides_dir / "broken" / "broken.svs")
    bags, cohort = make_bags(root)
    run = root / "run"
    recipe = root / "recipe.yaml"
    recipe.write_text(RECIPE.format(slides=slides, cohort=cohort, bags=bags, run=run))
    assert main(["run", str(recipe), "--out", str(run), "--quiet"]) == 0
    return run


def images(page: str) -> list[str]:
    return re.findall(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", page)


@pytest.mark.slow
def test_report_of_a_real_run(real_run: Path) -> None:
    page = (real_run / "report.html").read_text(encoding="utf-8")
    for heading in (
        "Findings", "Stages", "Stage tile", "QC thumbnails (1 slide)", "Test metrics (classification)",
        "Out-of-fold plots", "Cohort", "Who lacks which modality", "Exclusions (0)", "Attention heatmaps",
        "Skipped items (1)", "Skipped items (2)", "Provenance", "Plugin packages", "Recipe",
    ):  # fmt: skip
        assert heading in page, heading
    assert "<details><summary>resolved recipe" in page and "stage: heatmaps" in page
    # the last stage wrote it from inside the run, which ended with it: the page says finished
    assert "running (writing this report)" not in page and "done (wrote this report)" in page
    assert '<span class="badge done">done</span> · started' in page and " · finished " in page
    assert "This stage is writing this page." in page
    provenance = read_json(real_run / "provenance.json")
    assert f"<dd>{provenance['torch']}</dd>" in page and "histo-mml" in page

    # every picture is embedded: QC of the one good slide, ROC, confusion matrix, two heatmaps
    sources = images(page)
    assert len(sources) == 5
    assert all(re.fullmatch(r"data:image/(png|jpeg);base64,[A-Za-z0-9+/]+=*", s) for s in sources)
    assert 'alt="QC of slide cmu-1-small-region"' in page
    assert page.count('alt="heatmap of cmu-1-small-region') == 2

    # nothing is fetched: no external resource, no script, no stylesheet link
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<(script|link|iframe|object|embed)\b", page, re.IGNORECASE)
    assert not re.search(r"\b(src|href)=\"(?!data:|#)", page)
    assert "Content-Security-Policy" in page

    # ids from the run are text, never markup
    assert "alert(1)" in page and "alert(2)" in page
    assert "&lt;script&gt;alert(1)&lt;script&gt;" in page and "&lt;script&gt;alert(2)&lt;/script&gt;" in page

    # the verdict is the one metrics.json supports
    auc = read_json(real_run / "stages" / "train" / "metrics.json")["summary"]["auc"]
    expected = (
        "Learning is above chance" if auc["mean"] - auc["std"] > 0.5
        else "Worse than chance" if auc["mean"] + auc["std"] < 0.5
        else "Not distinguishable from chance"
    )  # fmt: skip
    assert f"{expected}: mean test AUC {auc['mean']:.3f} ± {auc['std']:.3f} over 3 folds" in page


@pytest.mark.slow
def test_histo_report_rebuilds_the_finished_run(real_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "elsewhere.html"
    assert main(["report", str(real_run), "-o", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    summary = read_json(real_run / "summary.json")
    assert "running (writing this report)" not in page and "Written by stage" not in page
    assert [s["status"] for s in summary["stages"]] == ["done"] * 6
    assert page.count('<span class="badge done">done</span>') >= 7  # the run and its six stages
    assert len(images(page)) == 5

    # a rerun reuses every stage but the report, which it rebuilds (a cached one could be stale)
    before = (real_run / "report.html").stat().st_mtime_ns
    recipe = real_run.parent / "recipe.yaml"
    assert main(["run", str(recipe), "--out", str(real_run), "--quiet"]) == 0
    statuses = {s["id"]: s["status"] for s in read_json(real_run / "summary.json")["stages"]}
    assert statuses == {**{k: "cached" for k in statuses if k != "report"}, "report": "done"}
    assert (real_run / "report.html").stat().st_mtime_ns != before
    assert "cached (from " in (real_run / "report.html").read_text(encoding="utf-8")


# -- a hand-made run directory: generic artifacts, failures, unfinished runs ----------------------
def write_png(path: Path, colour: tuple[int, int, int] = (200, 30, 30), size: int = 40) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path)
    return path


def stage(sid: str, status: str = "done", **extra: Any) -> dict[str, Any]:
    return {"id": sid, "stage": extra.pop("stage", "custom"), "status": status, "seconds": 1.5, "failures": 0,
            "metrics": {}, "artifacts": {}, **extra}  # fmt: skip


def hand_made_run(root: Path, stages: list[dict[str, Any]], order: list[str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    ids = order or [s["id"] for s in stages]
    recipe = {"name": "hand", "stages": {sid: {"stage": "custom", "params": {}} for sid in ids}}
    import yaml

    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    summary = {"name": "hand", "status": "done", "started": "2026-01-01T00:00:00+00:00", "stages": stages}
    (root / "summary.json").write_text(json.dumps(summary))
    return root


def test_generic_artifacts_of_any_stage(tmp_path: Path) -> None:
    run = tmp_path / "run"
    folder = run / "stages" / "mine"
    folder.mkdir(parents=True)
    write_png(folder / "curve.png")
    write_png(folder / "tiles" / "a.png")
    write_png(folder / "tiles" / "b.png", (0, 0, 255))
    (folder / "small.csv").write_text("name,value\nalpha,1.5\n<b>bold</b>,2\n")
    (folder / "big.csv").write_text("i,square\n" + "".join(f"{i},{i * i}\n" for i in range(60)))
    (folder / "info.json").write_text(json.dumps([{"k": "a", "v": 1}, {"k": "b", "v": 2}]))
    (folder / "model.bin").write_bytes(b"\0" * 2048)
    (folder / "ablation.csv").write_text(
        "label,auc,auc_mean,auc_std\nfull,0.810 ± 0.020,0.81,0.02\nno omics,0.640 ± 0.050,0.64,0.05\n"
    )
    (folder / "ablation.json").write_text(json.dumps([{"label": "full", "auc": "0.810 ± 0.020"}]))
    (run / "stages" / "other").mkdir(parents=True)
    (run / "stages" / "other" / "ablation.json").write_text(json.dumps({"wsi only": {"auc": 0.7}}))
    (folder / "failures.jsonl").write_text(
        json.dumps({"stage": "mine", "item": "<i>x</i>", "reason": "bad & broken", "kind": "row"}) + "\n{cut"
    )
    artifacts = {
        f"stages/mine/{name}": f"the {name} <desc>"
        for name in ("curve.png", "tiles", "small.csv", "big.csv", "info.json", "model.bin", "gone.png")
    }
    hand_made_run(
        run, [stage("mine", artifacts=artifacts, failures=1, metrics={"score": 0.25}), stage("other")]
    )

    page = build_report(run).read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') == 3  # curve.png and the two in tiles/
    assert 'alt="stages/mine/curve.png"' in page and "the curve.png &lt;desc&gt;" in page
    assert '<td class="wrap">&lt;b&gt;bold&lt;/b&gt;</td>' in page and '<td class="num">1.5</td>' in page
    assert '<td class="num">59</td>' not in page and "first 20 of 60 rows shown; the whole table is" in page
    assert "<details><summary>the big.csv &lt;desc&gt; (60 rows, 2 columns)</summary>" in page  # folded
    assert "<h4>the small.csv &lt;desc&gt;</h4>" in page  # a short table is shown as it is
    assert "<b>score</b>0.25" in page
    assert '<td class="wrap">b</td><td class="num">2</td>' in page  # info.json as a table
    assert "stages/mine/model.bin" in page and "2.0 kB" in page
    assert "stages/mine/gone.png" in page and "missing" in page
    # an ablation table: the CSV when there is one (the JSON holds the same rows), mean ± std columns only
    assert "Ablation (ablation.csv)" in page and '<td class="wrap">0.640 ± 0.050</td>' in page
    assert "<th>auc_mean</th>" not in page and "<th>auc_std</th>" not in page
    assert page.count("<h3>Ablation") == 2 and "Ablation (ablation.json)" in page and "wsi only" in page
    assert "Skipped items (1)" in page and "&lt;i&gt;x&lt;/i&gt;" in page and "bad &amp; broken" in page


def test_failed_pending_and_unfinished_runs(tmp_path: Path) -> None:
    run = hand_made_run(
        tmp_path / "run",
        [stage("first"), stage("second", "failed", error="no <slides> found"), stage("third", "not run")],
    )
    old = {"folds": [], "summary": {"auc": {"mean": 0.9, "std": 0.01, "folds": 3}}}
    (run / "stages" / "third").mkdir(parents=True)
    (run / "stages" / "third" / "metrics.json").write_text(json.dumps(old))  # from an earlier run
    page = build_report(run).read_text(encoding="utf-8")
    assert "Findings" not in page and "above chance" not in page
    assert "stages/first is missing" in page
    assert '<span class="badge failed">failed</span>' in page and "no &lt;slides&gt; found" in page
    assert '<span class="badge not">not run</span>' in page
    assert "This stage has not run in this run, so nothing of it is shown." in page

    # inside a run: the summary so far, this stage running, later ones pending
    inside = hand_made_run(tmp_path / "inside", [stage("first")], order=["first", "report", "last"])
    info = load_run(inside, building="report")
    assert [(s.id, s.status) for s in info.stages] == [
        ("first", "done"), ("report", "running (writing this report)"), ("last", "pending")
    ]  # fmt: skip
    assert info.status == "running"
    # the report as the recipe's last stage, after stages that all succeeded: the run ends with it
    done = [stage("first"), stage("second", "cached")]
    last = hand_made_run(tmp_path / "last", done, order=["first", "second", "report"])
    info = load_run(last, building="report")
    assert info.status == "done" and info.finished is not None
    assert info.stages[-1].status == "done (wrote this report)"
    page = build_report(last, building="report").read_text(encoding="utf-8")
    assert '<span class="badge done">done</span>' in page and "while the run was still going" not in page
    # ... but not when a stage before it failed (the run is failing) or when a stage comes after it
    failing = hand_made_run(tmp_path / "failing", [stage("first", "failed")], order=["first", "report"])
    assert load_run(failing, building="report").status == "running"
    # a summary that already lists this stage is the previous run's: none of it describes this run
    stale = hand_made_run(tmp_path / "stale", [stage("report"), stage("last")], order=["report", "last"])
    assert [s.status for s in load_run(stale, building="report").stages] == [
        "running (writing this report)",
        "pending",
    ]
    # the report is the first stage of a fresh run: no summary.json yet
    (stale / "summary.json").unlink()
    assert "pending" in build_report(stale, building="report").read_text(encoding="utf-8")


def test_not_a_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(HistoError, match="is not a run directory"):
        build_report(tmp_path)
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "is not a run directory" in capsys.readouterr().err
    (tmp_path / "summary.json").write_text("{not json")
    with pytest.raises(HistoError, match=r"summary\.json is not valid JSON"):
        build_report(tmp_path)


@pytest.mark.parametrize(
    ("summary", "level", "words"),
    [
        ({"auc": {"mean": 0.9, "std": 0.05, "folds": 5}}, "above", "Learning is above chance"),
        ({"auc": {"mean": 0.6, "std": 0.15, "folds": 5}}, "chance", "Not distinguishable from chance"),
        ({"c_index": {"mean": 0.3, "std": 0.1, "folds": 5}}, "below", "Worse than chance"),
        ({"c_index": {"mean": 0.8, "std": 0.0, "folds": 1}}, "unknown", "single fold"),
        # the C-index is judged before an AUC; a metric whose mean is NaN is passed over
        ({"c_index": {"mean": 0.52, "std": 0.01, "folds": 3}, "auc": {"mean": 0.9, "std": 0, "folds": 3}},
         "above", "C-index 0.520"),
        ({"c_index": {"mean": float("nan"), "std": 0, "folds": 3},
          "auc": {"mean": 0.55, "std": 0.1, "folds": 3}}, "chance", "AUC 0.550"),
    ],
)  # fmt: skip
def test_chance_verdict(summary: dict[str, Any], level: str, words: str) -> None:
    verdict = chance_verdict(summary)
    assert verdict is not None and verdict.level == level and words in verdict.text


def test_no_verdict_without_a_ranking_metric() -> None:
    assert chance_verdict({"accuracy": {"mean": 0.9, "std": 0.01, "folds": 3}}) is None


def test_intervals_and_comparisons_in_the_report(tmp_path: Path) -> None:
    """Every metric with an interval (fold-mean t-interval, pooled bootstrap CI); compare's sentences in
    the findings and its pairs with their tests."""
    run = tmp_path / "run"
    model, cmp = run / "stages" / "coxnet", run / "stages" / "cmp"
    model.mkdir(parents=True)
    cmp.mkdir(parents=True)
    folds = [{"fold": k, "n_train": 80, "n_val": 0, "n_test": 20, "best_epoch": None, "selected_on":
              "inner 5-fold CV (c_index)", "chosen": {"alpha": 0.25}, "test": {"c_index": c}}
             for k, c in enumerate([0.6, 0.7, 0.65])]  # fmt: skip
    summary = {"c_index": {"mean": 0.65, "std": 0.05, "folds": 3}}
    pooled = {"c_index": {"estimate": 0.64, "low": 0.58, "high": 0.7}}
    (model / "metrics.json").write_text(json.dumps({"folds": folds, "summary": summary, "pooled": pooled}))
    sentence = "deep is not distinguishable from coxnet on these 3 folds (paired t p=0.41, n=3)."
    rows = [{"stage": "deep", "label": "deep", "c_index": "0.600 ± 0.050",
             "pooled c_index (95% CI)": "0.600 (0.540 to 0.660)", "c_index_p_vs_reference": 0.41},
            {"stage": "coxnet", "label": "coxnet", "c_index": "0.650 ± 0.050",
             "pooled c_index (95% CI)": "0.640 (0.580 to 0.700)"}]  # fmt: skip
    pairs = [{"a": "deep", "b": "coxnet", "metric": "c_index", "folds": [0, 1, 2],
              "differences": [-0.05, -0.02, -0.08], "mean_difference": -0.05, "t_p": 0.41,
              "wilcoxon_p": 0.5, "sentence": sentence}]  # fmt: skip
    (cmp / "t.json").write_text(json.dumps(rows))
    (cmp / "t_pairs.json").write_text(json.dumps(pairs))
    (cmp / "compare.json").write_text(json.dumps({
        "table": "t.csv", "rows": "t.json", "pairs": "t_pairs.json", "markdown": "t.md",
        "metrics": ["c_index"], "primary": "c_index", "reference": "coxnet",
        "labels": {"deep": "deep", "coxnet": "coxnet"}, "bootstrap": 1000,
    }))  # fmt: skip
    hand_made_run(run, [stage("coxnet"), stage("cmp")])
    page = build_report(run).read_text(encoding="utf-8")
    assert "95% CI of the mean (t)" in page and "0.526 to 0.774" in page  # 0.65 ± t(0.975, 2) 0.05 / √3
    assert "0.64 (0.58 to 0.7)" in page  # the pooled bootstrap CI
    assert "hyperparameters were chosen by inner 5-fold CV" in page and "alpha 0.25" in page
    assert page.count(sentence) == 2  # in the findings and in the comparison
    assert "Which differences are real" in page and "-0.050, -0.020, -0.080" in page
    assert "p vs coxnet (c_index)" in page and "Ablation" not in page
