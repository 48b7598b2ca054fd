"""histo: plugin-based multi-modal learning on whole-slide images and transcriptomics.

The public surface a plugin author needs is re-exported here: the hook marker, the spec record
and the component interfaces.
"""

from importlib.metadata import PackageNotFoundError, version

import pluggy

from .specs import ComponentSpec, EmptyConfig

try:
    __version__ = version("histo-mml")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

DISTRIBUTION = "histo-mml"
hookimpl = pluggy.HookimplMarker("histo")

__all__ = ["DISTRIBUTION", "ComponentSpec", "EmptyConfig", "__version__", "hookimpl"]
