"""What a run prints when its output goes to a file, and the compare stage's table in the log."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image, ImageDraw

from histo import ComponentSpec, EmptyConfig, hookimpl
from histo.interfaces import Stage, StageContext
from histo.manager import Plugins
from histo.run import run_recipe
from histo.run.logs import terminal_handler

LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+\S")


def tissue_png(path: Path, mpp: float = 0.5, size: int = 1600) -> Path:
    """A stained disc on glass, with its pixel size in the PNG's pHYs chunk."""
    image = Image.new("RGB", (size, size), (245, 245, 245))
    ImageDraw.Draw(image).ellipse((200, 200, size - 200, size - 200), fill=(190, 90, 170))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, dpi=(25_400 / mpp, 25_400 / mpp))
    return path


def test_a_run_redirected_to_a_file_writes_whole_lines_and_a_finished_report(tmp_path: Path) -> None:
    """`histo run ... > log 2>&1`: no line wrapped at 80 columns (long paths intact), none padded, and
    the report written by the last stage says the run finished."""
    slides = tmp_path / ("a-folder-name-long-enough-to-overflow-eighty-columns-" * 2) / "slides"
    tissue_png(slides / "disc-with-a-long-slide-name-of-its-own.png")
    tissue_png(slides / "glass.png").write_bytes(b"not a png at all")  # a skipped slide: a warning line
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "name": "logs",
                "stages": {
                    "tile": {"stage": "tile", "params": {"slides": str(slides), "reader": "image"}},
                    "report": {"stage": "report"},
                },
            },
            sort_keys=False,
        )
    )
    run, log = tmp_path / "run", tmp_path / "log.txt"
    env = {**os.environ, "COLUMNS": "80", "TERM": "xterm-256color"}  # what rich would wrap to
    with log.open("w") as fh:
        code = subprocess.run(
            [sys.executable, "-m", "histo", "run", str(recipe), "--out", str(run)],
            stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=240, check=False,
        ).returncode  # fmt: skip
    text = log.read_text(encoding="utf-8")
    assert code == 0, text
    lines = text.splitlines()
    log_lines = [line for line in lines if LOG_LINE.match(line)]
    # every line is a log record or one of the closing summary lines: none is a wrapped continuation
    closing = ("tile ", "report ", "run directory: ")
    assert all(LOG_LINE.match(line) or line.startswith(closing) for line in lines), text
    assert all(line == line.rstrip() for line in lines), "padded lines"
    assert any(line.endswith(f"tile: 2 slide(s) below {slides}") for line in log_lines), text
    # skips are summarised, one line per reason with a count and the items named (histo.run.failures)
    assert any(
        "1 skipped: cannot open image" in line and str(slides) in line and "(glass)" in line
        for line in log_lines
    ), text
    assert any(line.startswith("run directory: ") and line.endswith(str(run)) for line in lines)

    page = (run / "report.html").read_text(encoding="utf-8")
    assert '<span class="badge done">done</span> · started' in page
    assert "running (writing this report)" not in page and "still going" not in page
    assert json.loads((run / "summary.json").read_text())["status"] == "done"


def test_a_terminal_gets_rich_and_a_file_gets_plain_lines() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    from rich.logging import RichHandler

    assert isinstance(terminal_handler(Tty()), RichHandler)
    plain = io.StringIO()
    handler = terminal_handler(plain)
    assert not isinstance(handler, RichHandler)
    long = "x" * 300
    handler.emit(logging.LogRecord("histo", logging.INFO, __file__, 1, "path %s", (long,), None))
    (line,) = plain.getvalue().splitlines()
    assert LOG_LINE.match(line) and line.endswith(f"path {long}")


class FakeTrain(Stage[EmptyConfig]):
    """Leaves a train stage's metrics.json, so the compare stage has something to tabulate."""

    auc = 0.0

    def run(self, ctx: StageContext) -> None:
        summary = {"auc": {"mean": self.auc, "std": 0.01}, "balanced_accuracy": {"mean": 0.6, "std": 0.02}}
        (ctx.out_dir / "metrics.json").write_text(json.dumps({"summary": summary}))


class TeacherPlugin:
    @hookimpl
    def histo_stages(self) -> Iterable[ComponentSpec[Any]]:
        teacher = type("Teacher", (FakeTrain,), {"auc": 0.9})
        student = type("Student", (FakeTrain,), {"auc": 0.7})
        return [
            ComponentSpec("fake_teacher", teacher, EmptyConfig, "test"),
            ComponentSpec("fake_student", student, EmptyConfig, "test"),
        ]


def test_compare_logs_its_table_with_a_header(
    histo_plugins: Plugins, load_recipe_text: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    histo_plugins.register(TeacherPlugin(), "fake-train", package="<test>")
    text = yaml.safe_dump(
        {
            "name": "cmp",
            "stages": {
                "teacher": {"stage": "fake_teacher"},
                "wsi_student": {"stage": "fake_student"},
                "compare": {"stage": "compare", "params": {"stages": ["teacher", "wsi_student"]}},
            },
        },
        sort_keys=False,
    )
    with caplog.at_level(logging.INFO, logger="histo"):
        result = run_recipe(load_recipe_text(text), tmp_path / "run", plugins=histo_plugins, quiet=True)
    assert result.ok
    messages = [r.getMessage() for r in caplog.records]
    start = messages.index("compare: comparison (test metrics, mean ± std over folds):")
    header, rule, first, second = messages[start + 1 : start + 5]
    assert header == "label       | auc           | balanced_accuracy"
    assert set(rule) <= {"-", "+"} and len(rule) == len(header)
    assert first == "teacher     | 0.900 ± 0.010 | 0.600 ± 0.020"
    assert second == "wsi_student | 0.700 ± 0.010 | 0.600 ± 0.020"
