"""The run-directory lock, with real processes: a second command fails at once naming the holder,
waits with --wait, and takes over a lock whose holder was killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from histo.run.lock import LOCK_NAME, RunDirectoryBusy, run_lock

QUICKSTART = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"
HOLD = """
import sys, time
from pathlib import Path
from histo.run.lock import run_lock
with run_lock(Path(sys.argv[1]), command="histo run holder.yaml"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold(run_dir: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process holding the lock, as a `histo run` does for the whole run."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def histo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "histo", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "recipe.yaml").write_text("name: run\n")  # enough for `histo report`
    return folder


def test_a_second_command_fails_at_once_naming_the_holder(run_dir: Path) -> None:
    holder = hold(run_dir, 60)
    try:
        start = time.monotonic()
        for args in (("report", str(run_dir)), ("run", str(QUICKSTART), "--out", str(run_dir))):
            result = histo(*args)
            assert result.returncode == 1, result.stderr
            assert f"is in use by `histo run holder.yaml` (pid {holder.pid} on host" in result.stderr
            assert "--wait" in result.stderr
        assert time.monotonic() - start < 60
        assert not (run_dir / "report.html").exists() and not (run_dir / "stages").exists()
    finally:
        holder.kill()
        holder.wait()


def test_wait_queues_behind_the_holder(run_dir: Path) -> None:
    holder = hold(run_dir, 3)
    result = histo("report", str(run_dir), "--wait")
    assert holder.wait() == 0  # the holder finished first
    assert result.returncode == 0, result.stderr
    assert "waiting for" in result.stderr and f"pid {holder.pid}" in result.stderr
    assert (run_dir / "report.html").exists()


def test_the_lock_of_a_killed_process_is_taken_over_with_a_note(run_dir: Path) -> None:
    holder = hold(run_dir, 60)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert json.loads((run_dir / LOCK_NAME).read_text())["pid"] == holder.pid  # left behind
    result = histo("report", str(run_dir))
    assert result.returncode == 0, result.stderr
    assert f"took over the lock of {run_dir} left by" in result.stderr and str(holder.pid) in result.stderr
    assert (run_dir / LOCK_NAME).read_text() == ""  # released cleanly: nothing to take over next time
    assert "took over" not in histo("report", str(run_dir)).stderr


def test_without_flock_a_dead_pid_on_this_host_is_taken_over(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    from histo.run import lock

    monkeypatch.setattr(lock, "_try_flock", lambda fd: None)  # a file system without locks
    path = run_dir / LOCK_NAME
    code = "import os; print(os.getpid())"
    dead = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    alive = {"pid": os.getppid(), "host": socket.gethostname(), "started": "t", "command": "histo run x"}
    path.write_text(json.dumps(alive))
    with pytest.raises(RunDirectoryBusy, match="histo run x"), run_lock(run_dir):
        pass
    path.write_text(json.dumps({**alive, "pid": int(dead.stdout)}))
    notes: list[str] = []
    with run_lock(run_dir, note=notes.append):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert notes and "no longer running" in notes[0]


def test_only_rank_zero_locks_under_torchrun(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from histo.run.lock import command_lock

    holder = hold(run_dir, 60)
    try:
        monkeypatch.setenv("RANK", "1")
        with command_lock(run_dir, wait=False, note=print):  # rank 1 does not contend
            pass
        monkeypatch.setenv("RANK", "0")
        with pytest.raises(RunDirectoryBusy), command_lock(run_dir, wait=False, note=print):
            pass
    finally:
        holder.kill()
        holder.wait()
