"""The report in a real browser: headless Chromium renders report.html offline, with its images.

Skips when no Chromium is installed (CI installs Debian's `chromium`, see .ci/run).
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from histo.cli import main

CMU = "cmu-1-small-region"
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--mute-audio",
)  # fmt: skip


def chromium() -> str:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip("Chromium is not installed (apt-get install chromium); the browser check needs it")


def browse(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [chromium(), *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def report(slides_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run with a QC thumbnail of a real slide, a skipped broken slide, ROC and confusion plots."""
    import h5py

    root = tmp_path_factory.mktemp("browser")
    slides = root / "slides"
    slides.mkdir()
    (slides / f"{CMU}.svs").symlink_to(slides_dir / f"{CMU}.svs")
    (slides / "<b>broken<b>.svs").symlink_to(slides_dir / "broken" / "broken.svs")
    rng = np.random.default_rng(1)
    (root / "bags").mkdir()
    rows = [["patient_id", "slide_id", "diagnosis"]]
    for i in range(12):
        with h5py.File(root / "bags" / f"S{i}.h5", "w") as h5:
            h5["features"] = (rng.normal(size=(6, 8)) + 2 * (i % 2)).astype(np.float32)
            h5["coords"] = rng.integers(0, 5000, size=(6, 2))
        rows.append([f"P{i}", f"S{i}", ["benign", "tumour"][i % 2]])
    with (root / "cohort.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    recipe = root / "recipe.yaml"
    recipe.write_text(
        f"""\
name: browser
stages:
  tile: {{stage: tile, params: {{slides: {slides}, magnifications: [10x]}}}}
  train:
    stage: train
    params:
      cohort: {{table: {root / "cohort.csv"}, label_column: diagnosis}}
      features: {{folder: {root / "bags"}}}
      task: {{name: classification, params: {{column: diagnosis, classes: [benign, tumour]}}}}
      model: {{slide_encoder: mean}}
      splits: {{folds: 3, stratify: label}}
      training: {{epochs: 2, batch_size: 4, selection: {{protocol: holdout}}}}
  report: {{stage: report, params: {{title: "Browser check"}}}}
"""
    )
    assert main(["run", str(recipe), "--out", str(root / "run"), "--quiet"]) == 0
    return root / "run" / "report.html"


@pytest.mark.slow
def test_chromium_renders_the_report_with_its_images(report: Path, tmp_path: Path) -> None:
    dumped = browse(report, tmp_path / "profile-dom", "--dump-dom")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = dumped.stdout
    assert "<title>Browser check</title>" in dom and "Stage tile" in dom and "Test metrics" in dom
    sources = re.findall(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", dom)
    assert len(sources) == 3 and all(s.startswith("data:image/") for s in sources)  # QC, ROC, confusion
    assert "&lt;b&gt;broken&lt;b&gt;" in dom and "<b>broken" not in dom  # the odd slide id stayed text

    shot = tmp_path / "page.png"
    taken = browse(report, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1280,2600")
    assert taken.returncode == 0 and shot.is_file(), taken.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (2600, 1280)
    colours = np.unique((pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2])
    assert pixels.std() > 20 and len(colours) > 1000  # not blank: text, tables and pictures
    # H&E pink/purple appears only in the slide thumbnail: the embedded image was decoded and drawn
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    stained = (red > 120) & (blue > 100) & (green < red - 40) & (green < blue - 10)
    assert stained.mean() > 0.005
