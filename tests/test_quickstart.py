"""The README's first command, end to end: `histo run recipes/quickstart.yaml`, then `histo predict` with
its distilled student on a real slide it never saw (cmu-1-small-region.svs, an OpenSlide test slide of
skin, not the generated demo tissue). About a minute on an idle 2-core machine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from histo.cli import main
from histo.io import read_json

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("quickstart") / "run"
    assert main(["run", str(ROOT / "recipes" / "quickstart.yaml"), "--out", str(run), "--quiet"]) == 0
    return run


@pytest.mark.slow
def test_quickstart_learns_and_reports_it(quickstart: Path) -> None:
    summary = read_json(quickstart / "summary.json")
    assert all(stage["status"] == "done" for stage in summary["stages"]), summary
    teacher = read_json(quickstart / "stages" / "teacher" / "metrics.json")["summary"]["auc"]
    # 4 balanced classes: chance is 0.5; seed 7 gave 0.93 +- 0.06 on the machines used so far
    assert teacher["mean"] - teacher["std"] > 0.6, teacher
    report = (quickstart / "report.html").read_text(encoding="utf-8")
    assert "Learning is above chance: mean test AUC" in report
    assert report.count(";base64,") >= 10, "plots, QC thumbnails and heatmaps are embedded"
    heatmaps = list((quickstart / "stages" / "heatmaps").rglob("*.png"))
    assert len(heatmaps) >= 6, heatmaps


@pytest.mark.slow
@pytest.mark.shared_data
def test_predict_runs_the_quickstart_student_on_a_real_slide(
    quickstart: Path, slides_dir: Path, tmp_path: Path
) -> None:
    slide = slides_dir / "cmu-1-small-region.svs"
    out = tmp_path / "predictions"
    assert main(["predict", str(quickstart), str(slide), "--out", str(out), "--quiet"]) == 0
    slides = pd.read_csv(out / "stages" / "predict" / "slide_predictions.csv")
    patients = pd.read_csv(out / "stages" / "predict" / "patient_predictions.csv")
    assert list(slides["slide_id"]) == ["cmu-1-small-region"] and len(patients) == 1
    probabilities = slides.filter(like="prob_").to_numpy()
    assert probabilities.shape == (1, 4) and np.isclose(probabilities.sum(), 1.0)
    assert slides["predicted_class"].iloc[0] in {
        "indolent_cold",
        "indolent_hot",
        "invasive_cold",
        "invasive_hot",
    }
    assert int(slides["folds"].iloc[0]) == 3, "every fold's student votes"
    assert read_json(out / "stages" / "predict" / "predict.json")["model"].endswith("distilled")
    drawn = sorted(p.name for p in (out / "stages" / "heatmaps").rglob("*.png"))
    assert drawn == ["cmu-1-small-region_10x_attention.png", "cmu-1-small-region_20x_attention.png"]


@pytest.mark.slow
@pytest.mark.shared_data
def test_predict_counts_skipped_slides_and_names_mpp(
    quickstart: Path, slides_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "slides"
    folder.mkdir()
    (folder / "good.svs").symlink_to(slides_dir / "cmu-1-small-region.svs")
    (folder / "no-mpp.svs").symlink_to(slides_dir / "tcga-cr-7395-01a-01-ts1.svs")
    (folder / "broken.svs").symlink_to(slides_dir / "broken" / "broken.svs")
    assert main(["predict", str(quickstart), str(folder), "--out", str(tmp_path / "p"), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "2 skipped (see failures.jsonl)" in captured.out  # the tile stage's line
    assert "2 of 3 slide(s) skipped" in captured.err
    assert "1 slide(s) lack microns per pixel in their files (no-mpp): rerun with --mpp" in captured.err
