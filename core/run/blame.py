"""Who is to blame for an exception, so the exit code and message point at what to fix.

The rule (`histo --help`, docs/user-guide.md): a user error (`HistoError`), the environment (disk full,
read-only or forbidden folder) and an exception raised inside a third-party plugin's code are
failures the user can act on (exit 1, and a plugin is named with its package and version); any other
exception is a bug in histo itself (exit 3, and the message says where the traceback went).
"""

from __future__ import annotations

import re
import traceback
from dataclasses import dataclass
from typing import Any

from ..errors import HistoError
from .environment import as_environment_fault

USER, ENVIRONMENT, PLUGIN, INTERNAL = "user", "environment", "plugin", "internal"



@dataclass(frozen=True)
class Blame:
    kind: str  # USER, ENVIRONMENT, PLUGIN or INTERNAL
    message: str

    @property
    def exit_code(self) -> int:
        return 3 if self.kind == INTERNAL else 1


@dataclass(frozen=True)
class Culprit:
    """A third-party component (or plugin) whose code raised."""

    what: str  # e.g. "slide_encoders 'gated_mil'" or "plugin gated"
    package: str
    version: str

    def __str__(self) -> str:
        return f"{self.what} from {self.package} {self.version}".rstrip()


def _top(module: str) -> str:
    return module.split(".")[0]


def _third_party_owners(
    plugins: Any, used: list[tuple[str, str, str, str]]
) -> dict[str, list[tuple[int, str, Culprit]]]:
    """top-level module -> [(defining module, culprit)] for the code of non-default plugins, the
    components the stage uses first so a message names the component rather than only its plugin."""
    owners: dict[str, list[tuple[int, str, Culprit]]] = {}
    infos = {info.name: info for info in plugins.plugins() if not info.default}
    used_names = {(kind, name) for kind, name, _, _ in used}
    for registry in plugins.registries().values():
        for entry in registry:
            info = infos.get(entry.plugin)
            if info is None:
                continue
            module = getattr(entry.spec.factory, "__module__", "") or info.module
            culprit = Culprit(f"{entry.kind} {entry.name!r}", entry.package, entry.version)
            rank = 0 if (entry.kind, entry.name) in used_names else 1
            owners.setdefault(_top(module), []).append((rank, module, culprit))
    for info in infos.values():
        if info.module:
            owners.setdefault(_top(info.module), []).append(
                (2, info.module, Culprit(f"plugin {info.name}", info.package, info.version))
            )
    return owners


def find_culprit(
    exc: BaseException, plugins: Any, used: list[tuple[str, str, str, str]] | None = None
) -> tuple[Culprit, str] | None:
    """The third-party component whose code is on the traceback (innermost first) and where."""
    owners = _third_party_owners(plugins, used or [])
    if not owners:
        return None
    frames = [
        (str(frame.f_globals.get("__name__", "")), f"{frame.f_code.co_filename}:{lineno}")
        for frame, lineno in traceback.walk_tb(exc.__traceback__)
    ]
    for module, where in reversed(frames + _worker_frames(exc, owners)):
        candidates = owners.get(_top(module))
        if not candidates:
            continue
        # prefer a used component, then the one defined in the module nearest to the frame's
        parts = module.split(".")
        _, _, culprit = min(candidates, key=lambda c: (c[0], -_shared(c[1].split("."), parts)))
        return culprit, where
    return None


_FILE_LINE = re.compile(r'File "([^"]+)", line (\d+)')


def _worker_frames(exc: BaseException, owners: dict[str, Any]) -> list[tuple[str, str]]:
    """Frames of a traceback carried as text in the message: an exception raised in a DataLoader
    worker process reaches the main process with the worker's traceback in its message. Each file
    under a third-party plugin's folder becomes (its top-level module, file:line), innermost last."""
    from ..sources import _locations

    folders = [(top, location) for top in owners for location in _locations(top)]
    found = []
    for path, line in _FILE_LINE.findall(str(exc)):
        for top, location in folders:
            if path == location or path.startswith(location.rstrip("/") + "/"):
                found.append((top, f"{path}:{line}"))
                break
    return found


def _shared(a: list[str], b: list[str]) -> int:
    """How many leading parts two dotted names share."""
    count = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        count += 1
    return count


def _innermost(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "unknown location"


def blame(
    exc: BaseException,
    plugins: Any,
    used: list[tuple[str, str, str, str]] | None = None,
    traceback_at: str = "",
) -> Blame:
    """Classify `exc`; `traceback_at` says where the full traceback was written."""
    where = f"; traceback in {traceback_at}" if traceback_at else ""
    fault = as_environment_fault(exc)  # one classification of the machine's errors: environment.py
    if fault is not None:
        return Blame(ENVIRONMENT, str(fault))
    if isinstance(exc, HistoError):
        return Blame(USER, str(exc))
    try:
        found = find_culprit(exc, plugins, used or [])
    except Exception:  # never let the diagnosis hide the error
        found = None
    if found is not None:
        culprit, location = found
        return Blame(
            PLUGIN,
            f"error in plugin code: {culprit} raised {type(exc).__name__}: {exc} (at {location}){where}; "
            f"report it to the maintainers of {culprit.package}",
        )
    return Blame(
        INTERNAL,
        f"internal error in histo (a bug): {type(exc).__name__}: {exc} (at {_innermost(exc)}){where}; "
        "please report it with that traceback",
    )
