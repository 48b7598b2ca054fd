"""histo-hed-tissue: a histo plugin that finds tissue by colour deconvolution (`hed_threshold`).

This package is imported whenever histo lists its plugins, so it imports nothing heavy: the
segmenter and its numpy/scipy maths load only when a recipe builds the component.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("histo-hed-tissue")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
