"""`histo new plugin`: every kind's package passes its own tests unchanged (run in-process here; CI also
pip-installs one and runs them), and bad names are usage errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from histo.cli import main
from histo.scaffold import KINDS, Names, ScaffoldError, new_plugin


def test_names_are_spelt_for_each_use() -> None:
    names = Names.of("Lab-MIL_2")
    assert (names.distribution, names.package, names.component, names.title) == (
        "histo-lab-mil-2",
        "histo_lab_mil_2",
        "lab_mil_2",
        "LabMil2",
    )
    assert Names.of("histo-lab").package == "histo_lab"  # the prefix is not doubled
    for bad in ("2lab", "lab mil", "lab--mil", "histo-", "lab.mil"):
        with pytest.raises(ScaffoldError):
            Names.of(bad)


def test_the_package_has_its_entry_point_and_refuses_to_overwrite(tmp_path: Path) -> None:
    root = new_plugin("lab-mil", "slide_encoders", tmp_path)
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["name"] == "histo-lab-mil"
    assert project["project"]["entry-points"]["histo"] == {"lab_mil": "histo_lab_mil.plugin"}
    plugin = (root / "src" / "histo_lab_mil" / "plugin.py").read_text()
    assert "import torch" not in plugin  # histo imports the entry point whenever it lists plugins
    assert "slide_encoder: lab_mil" in (root / "README.md").read_text()
    with pytest.raises(ScaffoldError, match="already exists"):
        new_plugin("lab-mil", "slide_encoders", tmp_path)


def test_cli_writes_a_package_and_reports_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["new", "plugin", "lab-tokens", "--kind", "omics_encoders", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "histo-lab-tokens" / "tests" / "test_plugin.py").is_file()
    assert main(["new", "plugin", "Lab Tokens", "--kind", "omics_encoders", "--out", str(tmp_path)]) == 2
    assert "lowercase letters" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["new", "plugin", "x", "--kind", "stagez"])
    assert exit_info.value.code == 2


class _Outcomes:
    """Records the call-phase outcome of every test of an in-process pytest session."""

    def __init__(self) -> None:
        self.outcomes: dict[str, str] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or report.outcome != "passed":
            self.outcomes[report.nodeid] = report.outcome


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(KINDS))
def test_generated_package_passes_its_own_tests(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = new_plugin(f"lab-{kind}", kind, tmp_path)
    monkeypatch.syspath_prepend(str(root / "src"))  # as `pip install -e` would, without installing
    outcomes = _Outcomes()
    args = [
        str(root / "tests"),
        "-q",
        "-p",
        "no:cacheprovider",
        "--import-mode=importlib",
        "--rootdir",
        str(root),
    ]
    code = pytest.main(args, plugins=[outcomes])
    assert code == 0, outcomes.outcomes
    assert sorted(outcomes.outcomes.values()) == ["passed"] * 3, outcomes.outcomes
