"""`histo new plugin NAME --kind KIND`: write a plugin package that installs and passes its own tests.

The package has the `histo` entry point, a torch-free `plugin.py` (hook and config), the component in
its own module, a README and tests built on `histo.testing` (registration, the contract check, and an
in-process run of a recipe that uses the component by name).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import HistoError
from ..io import write_text_atomic
from .templates import KINDS, Template


class ScaffoldError(HistoError):
    """A name or folder the scaffold cannot use (a usage error: exit code 2)."""

    exit_code = 2


NAME = re.compile(r"^[a-z][a-z0-9]*([_-][a-z0-9]+)*$")


@dataclass(frozen=True)
class Names:
    """The spellings of one plugin name: `histo-lab-mil`, `histo_lab_mil`, `lab_mil`, `LabMil`."""

    distribution: str
    package: str
    component: str
    title: str

    @classmethod
    def of(cls, name: str) -> Names:
        raw = name.strip().lower()
        if not NAME.match(raw):
            raise ScaffoldError(
                f"plugin name {name!r}: use lowercase letters and digits, words joined by '-' or '_', "
                "starting with a letter (e.g. lab-mil)"
            )
        stem = re.sub(r"^histo[-_]", "", raw).replace("-", "_")
        if not stem:
            raise ScaffoldError(f"plugin name {name!r} needs a word after 'histo-' (e.g. histo-lab-mil)")
        return cls(
            distribution="histo-" + stem.replace("_", "-"),
            package="histo_" + stem,
            component=stem,
            title="".join(part.capitalize() for part in stem.split("_")),
        )


def new_plugin(name: str, kind: str, out: Path) -> Path:
    """Write the package for a component of `kind` named after `name` into `out`/<distribution>;
    returns its folder. Refuses to overwrite an existing folder."""
    if kind not in KINDS:
        raise ScaffoldError(f"--kind {kind!r}: the scaffold knows {', '.join(KINDS)}")
    names = Names.of(name)
    root = Path(out) / names.distribution
    if root.exists():
        raise ScaffoldError(f"{root} already exists: choose another name or --out folder, or remove it")
    template: Template = KINDS[kind]
    for relative, text in template.files(names.package).items():
        write_text_atomic(root / relative, _fill(text, names, kind))
    return root


def _fill(text: str, names: Names, kind: str) -> str:
    for token, value in (
        ("__DIST__", names.distribution),
        ("__PACKAGE__", names.package),
        ("__COMPONENT__", names.component),
        ("__TITLE__", names.title),
        ("__KIND__", kind),
    ):
        text = text.replace(token, value)
    return text


__all__ = ["KINDS", "Names", "ScaffoldError", "new_plugin"]
