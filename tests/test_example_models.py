"""The example model-plugin packages, as installed (CI installs them; without them these tests skip).

Each package's own tests (examples/<package>/tests) check its component in depth through
`histo.testing`; here the installed distributions are found through the `histo` entry-point group,
with the right kind, package and version, and no plugin failure.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import pytest

from histo.manager import Plugins

EXAMPLES = [
    ("histo-gene-transformer", "omics_encoders", "gene_transformer"),
    ("histo-gated-mil", "slide_encoders", "gated_mil"),
    ("histo-film-fusion", "fusion_strategies", "film"),
    ("histo-lab-cnn", "feature_extractors", "lab_cnn"),
]


def _installed(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return ""


@pytest.mark.parametrize(("package", "kind", "name"), EXAMPLES)
def test_example_package_registers_through_its_entry_point(package: str, kind: str, name: str) -> None:
    installed = _installed(package)
    if not installed:
        pytest.skip(f"{package} is not installed; `pip install ./examples/{package}` (CI does)")
    plugins = Plugins(env={})
    entry = plugins.registry(kind).get(name)
    assert (entry.package, entry.version) == (package, installed)
    assert plugins.registry(kind).problem(name) is None
    assert not [f for f in plugins.failures if f.package == package]
