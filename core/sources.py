"""The source state of plugin code that a version number does not pin, for stage cache keys.

A package installed from an index is pinned by its version: the fingerprint already holds it. A plugin
under development is not: an editable install (`pip install -e`), a package installed from a local
folder, or a module registered without a distribution changes while its version stays the same. For
those, the fingerprint also holds a hash of the `.py` files of the component's top-level package, so
editing the plugin reruns the stages that use it.

histo's own default plugins are deliberately left out (see docs/architecture.md, "Cache keys and
plugin source"): they are keyed by histo's version and each stage's `version` attribute.

Hashing is cheap after the first call: each file's digest is cached by (size, mtime), so a process
rereads only files that changed, and an unchanged editable plugin costs a walk and a few stats.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from functools import cache
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

OWN_TOP_LEVEL = "histo"
MAX_FILES = 5000  # beyond this the package is not plugin code under development: hash stats only

_file_digests: dict[str, tuple[int, int, str]] = {}


@cache
def _pinned_by_version(package: str) -> bool:
    """True for a distribution installed from an index (its version says what its code is)."""
    try:
        dist = distribution(package)
    except (PackageNotFoundError, ValueError):
        return False  # registered in-process, from a path on sys.path, or a test module
    text = dist.read_text("direct_url.json")
    if not text:
        return True
    try:
        direct = json.loads(text)
    except ValueError:
        return True
    editable = bool(direct.get("dir_info", {}).get("editable"))
    return not editable and not str(direct.get("url", "")).startswith("file:")


def _locations(top_level: str) -> tuple[str, ...]:
    """Where the code of an imported (or importable) top-level module lives. Not cached: a test may
    import a module of the same name from another folder later in the same process."""
    module = sys.modules.get(top_level)
    spec = getattr(module, "__spec__", None) if module is not None else None
    try:
        spec = spec or importlib.util.find_spec(top_level)
    except (ImportError, ValueError):
        return ()
    if spec is None:
        return ()
    if spec.submodule_search_locations:
        return tuple(str(p) for p in spec.submodule_search_locations)
    return (spec.origin,) if spec.origin and spec.origin.endswith(".py") else ()


def _file_digest(path: str) -> str:
    stat = os.stat(path)
    cached = _file_digests.get(path)
    if cached and cached[0] == stat.st_size and cached[1] == stat.st_mtime_ns:
        return cached[2]
    with open(path, "rb") as fh:
        value = hashlib.sha256(fh.read()).hexdigest()
    _file_digests[path] = (stat.st_size, stat.st_mtime_ns, value)
    return value


def _python_files(location: str) -> list[str]:
    if os.path.isfile(location):
        return [location]
    found: list[str] = []
    for root, dirs, files in os.walk(location):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        found += [os.path.join(root, name) for name in sorted(files) if name.endswith(".py")]
        if len(found) > MAX_FILES:
            break
    return found


def tree_digest(top_level: str) -> str:
    """sha256 over the relative path and content of every `.py` file of an importable top-level
    module or package ('' when it cannot be found)."""
    entries: list[Any] = []
    for location in _locations(top_level):
        files = _python_files(location)
        base = Path(location).parent if os.path.isfile(location) else Path(location)
        for path in files:
            rel = str(Path(path).relative_to(base))
            if len(files) > MAX_FILES:
                stat = os.stat(path)
                entries.append([rel, stat.st_size, stat.st_mtime_ns])
            else:
                entries.append([rel, _file_digest(path)])
    if not entries:
        return ""
    return hashlib.sha256(json.dumps(entries).encode("utf-8")).hexdigest()


def source_digest(package: str, modules: list[str]) -> str:
    """Digest of the code of `modules` (the component's factory and the plugin's hook module) when
    `package` is not pinned by its version; '' otherwise, and for histo's own plugins."""
    tops = sorted({m.split(".")[0] for m in modules if m})
    tops = [t for t in tops if t != OWN_TOP_LEVEL]
    if not tops or _pinned_by_version(package):
        return ""
    digests = [tree_digest(top) for top in tops]
    if not any(digests):
        return ""
    return hashlib.sha256("".join(digests).encode("utf-8")).hexdigest()


def entry_modules(entry: Any, plugin_module: str = "") -> list[str]:
    """The modules that define a registered component: its factory's and its plugin's."""
    factory = entry.spec.factory
    module = getattr(factory, "__module__", None) or getattr(getattr(factory, "func", None), "__module__", "")
    return [m for m in (module, plugin_module) if m]
