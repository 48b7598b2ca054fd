"""Environment errors: a full disk, a read-only or forbidden folder, a failing device.

They are not bad inputs: skipping the item would record a slide as broken and cache the stage as done,
so a rerun after freeing space would never retry it. A stage that meets one fails as a whole (nothing
of it is marked done), and the message names the path, the cause and the fix. Exit status 1.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import HistoError

ENVIRONMENT_ERRNOS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "input/output error (a failing disk or network mount)",
}


class EnvironmentFault(HistoError):
    """The machine, not the input, stopped the work; rerun the same command once it is fixed."""

    exit_code = 1

    def __init__(self, message: str, path: str | None, cause: OSError) -> None:
        super().__init__(message)
        self.path = path
        self.cause = cause


def _fix(code: int, path: str) -> str:
    if code in (errno.ENOSPC, errno.EDQUOT):
        return f"free space on the disk holding {path} or choose another output folder (--out)"
    if code == errno.EROFS:
        return "choose an output folder on a writable disk (--out)"
    if code in (errno.EACCES, errno.EPERM):
        return f"give this user access to {path}, or choose another output folder (--out)"
    return f"check the disk or mount holding {path} (e.g. `dmesg`)"


# libraries that wrap the C error in text only (HDF5: "errno = 28, error message = ...")
_ERRNO_IN_TEXT = re.compile(r"(?:\[Errno |errno = )(\d+)")


def _errno_of(exc: OSError) -> int | None:
    if exc.errno in ENVIRONMENT_ERRNOS:
        return exc.errno
    for match in _ERRNO_IN_TEXT.finditer(str(exc)):
        if int(match.group(1)) in ENVIRONMENT_ERRNOS:
            return int(match.group(1))
    return None


_PARTIAL = re.compile(r"^\.(?P<name>.+)\.[^.]+\.partial$")  # histo.io.atomic_path's temporary names


def _target(filename: str | bytes | int) -> str:
    """The file the user asked for, not the temporary file an atomic write was filling."""
    path = Path(str(filename))
    match = _PARTIAL.match(path.name)
    return str(path.with_name(match.group("name"))) if match else str(path)


def find_environment_error(exc: BaseException | None) -> OSError | None:
    """The OSError with an environment errno in `exc` or its causes, or None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, EnvironmentFault):
            return exc.cause
        if isinstance(exc, OSError):
            code = _errno_of(exc)
            if code is not None:
                return exc if exc.errno == code else OSError(code, str(exc), exc.filename)
        exc = exc.__cause__ or exc.__context__
    return None


def as_environment_fault(exc: BaseException, path: Path | str | None = None) -> EnvironmentFault | None:
    """An EnvironmentFault describing `exc` (naming `path` when the error itself names none), or None."""
    if isinstance(exc, EnvironmentFault):
        return exc
    cause = find_environment_error(exc)
    if cause is None:
        return None
    where = _target(cause.filename) if cause.filename else (str(path) if path is not None else None)
    code = cause.errno if cause.errno is not None else errno.EIO
    text = ENVIRONMENT_ERRNOS[code]
    label = str(where) if where is not None else "the run directory"
    message = f"{text}: {label} ([Errno {code}] {cause.strerror or cause}); {_fix(code, label)}, then rerun"
    message += " the same command: finished work is kept and the rest is retried"
    return EnvironmentFault(message, str(where) if where is not None else None, cause)


def raise_if_environment(exc: BaseException, path: Path | str | None = None) -> None:
    """In a stage's catch-all around one item: re-raise an environment error instead of skipping."""
    fault = as_environment_fault(exc, path)
    if fault is not None:
        raise fault from exc


def environment_errors_fail(run: Callable[[Any], None], ctx: Any, path: Path) -> None:
    """Run a stage; an environment error it raises becomes an EnvironmentFault (a user error, exit 1)
    instead of an "internal error", naming `path` when the error itself names no file."""
    try:
        run(ctx)
    except HistoError:
        raise
    except Exception as exc:
        raise_if_environment(exc, path)
        raise
