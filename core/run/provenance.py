"""What produced a run: versions of histo, torch, Python and every plugin package."""

from __future__ import annotations

import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from .. import __version__
from ..manager import Plugins


def _version_of(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def provenance(plugins: Plugins, argv: list[str] | None = None) -> dict[str, Any]:
    packages: dict[str, str] = {}
    for info in plugins.plugins():
        packages[info.package] = info.version or _version_of(info.package) or "unknown"
    return {
        "histo": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": _version_of("torch"),
        "numpy": _version_of("numpy"),
        "openslide": _version_of("openslide-python"),
        "openslide_bin": _version_of("openslide-bin"),
        "plugin_packages": dict(sorted(packages.items())),
        "plugins": [
            {"name": p.name, "package": p.package, "version": p.version, "default": p.default}
            for p in plugins.plugins()
        ],
        # plugins that were skipped (import, hook, conflict, invalid config defaults): a run that
        # misses a component says so in its own record, not only on the terminal that started it
        "plugin_failures": [
            {"plugin": f.plugin, "package": f.package, "phase": f.phase, "message": f.message}
            for f in plugins.failures
        ],
        "command": argv if argv is not None else sys.argv,
    }
