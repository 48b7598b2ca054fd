"""Finding the feature bags in a folder written by histo, CLAM or TRIDENT: slide id -> file.

Recognised, in this order (the slide id is the file name without its extension):
- histo:   an extract stage folder (`<stage>/features/<mag>/*.h5`), its `features/` folder, or one
           `<mag>` folder; with several magnifications, `magnification` picks one.
- CLAM:    a folder with `h5_files/` and/or `pt_files/` (`.h5` preferred: it has coordinates).
- TRIDENT: a folder holding `features_<encoder>/`, directly or one level down
           (`<job>/20x_256px_0px_overlap/features_uni_v1/`); with several encoders, `encoder` picks one.
- flat:    a folder of `.h5` / `.pt` files.
"""

from __future__ import annotations

from pathlib import Path

from histo.errors import HistoError

SUFFIXES = (".h5", ".hdf5", ".pt")


def _files(folder: Path) -> dict[str, Path]:
    """stem -> file for the bags directly in `folder`; .h5 wins over .pt for the same slide."""
    found: dict[str, Path] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.iterdir(), key=lambda p: (p.suffix == ".pt", p.name)):
        if path.is_file() and path.suffix in SUFFIXES and not path.name.startswith("."):
            found.setdefault(path.stem, path)
    return dict(sorted(found.items()))


def _pick(options: dict[str, Path], wanted: str | None, what: str, folder: Path, key: str) -> Path:
    if wanted is not None:
        if wanted not in options:
            raise HistoError(f"{folder} has no {what} {wanted!r}; it has: {', '.join(sorted(options))}")
        return options[wanted]
    if len(options) > 1:
        names = ", ".join(sorted(options))
        raise HistoError(f"{folder} holds features for several {what}s ({names}); choose one with `{key}`")
    return next(iter(options.values()))


def find_bags(
    folder: Path | str, *, magnification: str | None = None, encoder: str | None = None
) -> dict[str, Path]:
    """Map slide id -> feature file for the bags in `folder` (see the module doc for the layouts)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise HistoError(f"feature folder {folder} does not exist")
    base = folder / "features" if (folder / "features").is_dir() else folder

    mags = {
        p.name: p for p in sorted(base.iterdir()) if p.is_dir() and _files(p) and not p.name.startswith(".")
    }
    clam = [folder / "h5_files", folder / "pt_files"]
    trident = {
        p.name.removeprefix("features_"): p
        for parent in (folder, *sorted(q for q in folder.iterdir() if q.is_dir()))
        for p in sorted(parent.glob("features_*"))
        if p.is_dir()
    }
    if any(c.is_dir() for c in clam):
        found = _files(clam[1])
        found.update(_files(clam[0]))
        bags = dict(sorted(found.items()))
    elif trident:
        bags = _files(_pick(trident, encoder, "encoder", folder, "encoder"))
    elif mags and not _files(base):
        bags = _files(_pick(mags, magnification, "magnification", base, "magnification"))
    else:
        bags = _files(base)
    if not bags:
        raise HistoError(
            f"no feature files (.h5, .pt) found in {folder}; expected a histo extract folder, CLAM's "
            "h5_files/ or pt_files/, TRIDENT's features_<encoder>/, or a folder of bags"
        )
    return bags
