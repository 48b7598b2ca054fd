"""Environment errors fail the stage (never a per-item skip, never cached), records are one per item
and cause, and skipped items are summarised by reason."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from histo.cli import main
from histo.errors import HistoError
from histo.run.environment import EnvironmentFault, as_environment_fault
from histo.run.failures import summarise_failures


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.ENOSPC, "free space on the disk holding /r/x.h5"),
        (errno.EDQUOT, "free space"),
        (errno.EROFS, "writable disk"),
        (errno.EACCES, "give this user access to /r/x.h5"),
        (errno.EPERM, "give this user access"),
        (errno.EIO, "check the disk or mount"),
    ],
)
def test_environment_errors_name_the_path_and_the_fix(code: int, words: str) -> None:
    fault = as_environment_fault(OSError(code, os.strerror(code), "/r/x.h5"))
    assert fault is not None and fault.exit_code == 1
    assert words in str(fault) and "rerun the same command" in str(fault)


def test_other_errors_and_wrapped_ones() -> None:
    assert as_environment_fault(FileNotFoundError(errno.ENOENT, "gone", "x")) is None
    assert as_environment_fault(ValueError("bad")) is None
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/r/.bag.h5.k2j3.partial")
        except OSError as inner:
            raise RuntimeError("writer failed") from inner
    except RuntimeError as outer:
        fault = as_environment_fault(outer)
    assert fault is not None and fault.path == "/r/bag.h5"  # the target, not the temporary file
    hdf5 = OSError("Can't write data (file write failed: errno = 28, error message = 'No space left')")
    assert as_environment_fault(hdf5) is not None


def three_slides(slides_dir: Path, tmp_path: Path, qc: bool = False) -> Path:
    """Two good slides and one without tissue at 64 px (a real per-slide skip)."""
    folder = tmp_path / "slides"
    folder.mkdir()
    (folder / "a.svs").symlink_to(slides_dir / "cmu-1-small-region.svs")
    (folder / "b.svs").symlink_to(slides_dir / "openslide-fixtures" / "small.svs")
    (folder / "c.svs").symlink_to(slides_dir / "tcga-cr-7395-01a-01-ts1.svs")
    recipe = tmp_path / "tile.yaml"
    recipe.write_text(
        f"stages:\n  tile:\n    stage: tile\n    params:\n      slides: {folder}\n"
        "      magnifications: ['10x']\n      patch_size: 64\n"
        f"      qc_thumbnails: {str(qc).lower()}\n"
        "      mpp_overrides: {c: 0.25}\n",
        encoding="utf-8",
    )
    return recipe


def failures(stage: Path) -> list[dict[str, Any]]:
    path = stage / "failures.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_full_disk_fails_the_stage_and_a_rerun_retries(
    slides_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from histo.plugins.tiling import coords_file

    recipe = three_slides(slides_dir, tmp_path)
    write_coords = coords_file.write_coords

    def full_disk(path: Path, *args: Any, **kwargs: Any) -> None:
        if path.stem == "c":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        write_coords(path, *args, **kwargs)

    monkeypatch.setattr(coords_file, "write_coords", full_disk)
    out = tmp_path / "run"
    assert main(["run", str(recipe), "--out", str(out), "--quiet"]) == 1
    message = capsys.readouterr().out
    assert "no space left on the device" in message and "c.h5" in message and "--out" in message
    stage = out / "stages" / "tile"
    assert not (stage / "stage.json").exists()  # nothing of the stage is done
    assert [f["item"] for f in failures(stage)] == ["b"]  # the full disk is no slide's fault

    monkeypatch.setattr(coords_file, "write_coords", write_coords)  # space freed
    assert main(["run", str(recipe), "--out", str(out), "--quiet"]) == 0
    assert "tile             done" in capsys.readouterr().out  # retried, not "cached"
    assert pd.read_csv(stage / "slides.csv").set_index("slide_id")["status"].to_dict() == {
        "a": "ok", "b": "failed", "c": "ok"
    }
    assert [f["item"] for f in failures(stage)] == ["b"]  # no duplicate after the resume


def _tmpfs(path: Path, options: str) -> bool:
    path.mkdir(exist_ok=True)
    if os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


def _histo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "histo", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_a_small_tmpfs_and_a_read_only_out(slides_dir: Path, tmp_path: Path) -> None:
    """The same on a real file system: a small tmpfs, then read-only (needs root to mount)."""
    mount = tmp_path / "mnt"
    if not _tmpfs(mount, "size=120k"):
        pytest.skip("cannot mount a tmpfs here (needs root); the injected-error test covers the logic")
    try:
        recipe = three_slides(slides_dir, tmp_path, qc=True)  # thumbnails fill 120 kB
        full = _histo("run", str(recipe), "--out", str(mount / "run"), "--quiet")
        assert full.returncode == 1, full.stdout + full.stderr
        assert "no space left on the device" in full.stdout + full.stderr
        assert "internal error" not in full.stdout + full.stderr and "Traceback" not in full.stderr
        assert not (mount / "run" / "stages" / "tile" / "stage.json").exists()
        assert all("Errno" not in f["reason"] for f in failures(mount / "run" / "stages" / "tile"))

        subprocess.run(["mount", "-o", "remount,size=20m", str(mount)], check=True)
        again = _histo("run", str(recipe), "--out", str(mount / "run"), "--quiet")
        assert again.returncode == 0 and "tile             done" in again.stdout, again.stderr

        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        for args in (("run", str(recipe), "--out", str(mount / "other")), ("report", str(mount / "run"))):
            result = _histo(*args)
            assert result.returncode == 1, result.stdout + result.stderr
            assert "read-only file system" in result.stderr and "internal error" not in result.stderr
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_stage_passing_the_error_to_record_failure_fails_instead(tmp_path: Path) -> None:
    import logging

    from histo.run import StageContext

    ctx = StageContext("s", tmp_path, tmp_path, 0, "cpu", False, logging.getLogger("t"))
    with pytest.raises(EnvironmentFault):
        ctx.record_failure("x", "cannot write", error=OSError(errno.EROFS, "Read-only file system"))
    ctx.record_failure("y", "broken", error=ValueError("bad pixels"))
    ctx.record_failure("y", "broken")  # the same item and cause again: one record
    assert [f["item"] for f in failures(tmp_path)] == ["y"] and len(ctx.failures) == 1


def test_failures_are_summarised_by_reason() -> None:
    records = [{"item": f"P{i}", "reason": "no expression row in omics.csv"} for i in range(600)]
    records += [{"item": s, "reason": f"slide {s}: no patch"} for s in ("S1", "S2")]
    records += [{"item": "broken.svs", "reason": "cannot open broken.svs: not a TIFF file"}]
    lines = summarise_failures(records)
    assert lines[0] == "600 skipped: no expression row in omics.csv (e.g. P0, P1, P2, ...)"
    assert lines[1] == "2 skipped: slide <item>: no patch (e.g. S1, S2)"
    # met once: the reason as written, the item's own name in it
    assert lines[2] == "1 skipped: cannot open broken.svs: not a TIFF file (broken.svs)"
    assert len(lines) == 4 and "failures.jsonl" in lines[3]


def test_an_all_empty_gene_names_the_gene_and_drop_gene(tmp_path: Path) -> None:
    from histo.plugins.cohort import OmicsConfig, load_omics

    table = tmp_path / "omics.csv"
    pd.DataFrame(
        {"patient_id": ["P1", "P2", "P3"], "TP53": [1.0, 2.0, 3.0], "EGFR": [None, None, None]}
    ).to_csv(table, index=False)
    with pytest.raises(HistoError, match=r"EGFR hold no value for any patient.*missing: drop_gene"):
        load_omics(OmicsConfig(table=table))
    assert list(load_omics(OmicsConfig(table=table, missing="drop_gene")).data.columns) == ["TP53"]


def test_one_record_per_patient_and_a_summary_in_the_log(tmp_path: Path) -> None:
    cohort, omics = tmp_path / "cohort.csv", tmp_path / "omics.csv"
    ids = [f"P{i:02d}" for i in range(30)]
    pd.DataFrame({"patient_id": ids, "dx": ["a", "b"] * 15}).to_csv(cohort, index=False)
    values = {f"G{g}": [float(i % 7 + g) for i in range(30)] for g in range(4)}
    genes = pd.DataFrame({"patient_id": ids, **values})
    genes.loc[0, "G1"] = None  # excluded for NaN expression: not also "no expression row"
    genes.drop(index=[1, 2]).to_csv(omics, index=False)  # P01, P02: no expression row
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"""stages:
  train:
    stage: train
    params:
      cohort: {{table: {cohort}, label_column: dx, slide_column: null}}
      omics: {{table: {omics}}}
      task: {{name: classification, params: {{column: dx, classes: [a, b]}}}}
      model: {{omics_encoder: {{name: snn, params: {{output_dim: 8}}}}}}
      splits: {{folds: 2}}
      training: {{epochs: 1}}
""",
        encoding="utf-8",
    )
    assert main(["run", str(recipe), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    records = failures(tmp_path / "run" / "stages" / "train")
    assert sorted((r["item"], r["reason"].split(" ")[0]) for r in records) == [
        ("P00", "missing"), ("P01", "no"), ("P02", "no")
    ]
    log = (tmp_path / "run" / "histo.log").read_text().splitlines()
    warnings = [line for line in log if " WARNING " in line]
    assert any("2 skipped: no expression row" in line for line in warnings)
    assert not any("skipped P0" in line for line in warnings)
