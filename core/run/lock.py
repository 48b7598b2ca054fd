"""One process at a time in a run directory: `histo run`, `predict` and `report` hold `.histo.lock`.

Two runs into one folder would mix outputs of different settings while `recipe.yaml` and
`stage.json` claim one. The lock is an advisory `flock` on the file, so the kernel releases it when
its holder dies, even by `kill -9`; the file's text (pid, host, start time, command) names the holder
for the second process. A file whose writer is gone is taken over with a note. Where `flock` is not
available the text alone decides: a holder on this host whose pid is dead is taken over.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import HistoError

LOCK_NAME = ".histo.lock"
POLL_SECONDS = 1.0
_HELD: set[str] = set()  # lock files this process holds

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]


class RunDirectoryBusy(HistoError):
    """Another process holds the run directory; nothing was written."""

    exit_code = 1


def _holder_text(holder: dict[str, Any]) -> str:
    if not holder:
        return "another process (its lock file names none)"
    command = holder.get("command") or "histo"
    where = f"pid {holder.get('pid')} on host {holder.get('host')}, since {holder.get('started')}"
    return f"`{command}` ({where})"


def _read(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = b""
    while chunk := os.read(fd, 65536):
        raw += chunk
    try:
        holder = json.loads(raw.decode("utf-8"))
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _try_flock(fd: int) -> bool | None:
    """True when locked, False when another process holds it, None when flock is not supported."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # ENOLCK, EOPNOTSUPP: a file system without locks
        return None
    return True


@contextmanager
def run_lock(
    run_dir: Path,
    *,
    wait: bool = False,
    command: str | None = None,
    note: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold `run_dir/.histo.lock` for the block; raise RunDirectoryBusy (or wait) while another holds it.

    Re-entrant within a process (`histo predict --out RUN_DIR` locks the same folder twice).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    key = os.path.realpath(path)
    if key in _HELD:
        yield
        return
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command or " ".join(["histo", *sys.argv[1:]]),
    }
    announced = False
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            if exc.errno != errno.EROFS:
                raise
            yield  # nobody can write into a read-only run directory: nothing to mix, reading is safe
            return
        locked = _try_flock(fd)
        holder = _read(fd)
        if locked is None:  # no flock here: the holder's pid decides
            locked = not holder or (holder.get("host") == me["host"] and not _alive(holder.get("pid")))
        if locked and os.path.exists(path) and os.stat(path).st_ino != os.fstat(fd).st_ino:
            os.close(fd)  # the file was replaced while we opened it: lock the current one
            continue
        if locked:
            break
        os.close(fd)
        if not wait:
            raise RunDirectoryBusy(
                f"{run_dir} is in use by {_holder_text(holder)}; wait for it to finish, rerun with --wait, "
                "or choose another output folder (--out)"
            )
        if not announced and note is not None:
            note(f"waiting for {run_dir}, in use by {_holder_text(holder)}")
            announced = True
        time.sleep(POLL_SECONDS)
    try:
        if holder and holder.get("pid") is not None and note is not None:
            note(f"took over the lock of {run_dir} left by {_holder_text(holder)}, no longer running")
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(me) + "\n").encode("utf-8"))
        os.fsync(fd)
        _HELD.add(key)
        yield
    finally:
        _HELD.discard(key)
        with suppress(OSError):  # a full disk must not hide the error that ended the run
            os.ftruncate(fd, 0)  # an empty file: released cleanly, nothing to take over
        os.close(fd)  # releases the flock


def command_lock(run_dir: Path, *, wait: bool, note: Callable[[str], None]) -> AbstractContextManager[None]:
    """The lock a command takes: rank 0 only under torchrun (one lock per run), every process otherwise."""
    if int(os.environ.get("RANK", "0")) != 0:
        return nullcontext()
    return run_lock(run_dir, wait=wait, note=note)
