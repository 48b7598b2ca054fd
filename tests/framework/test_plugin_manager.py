from __future__ import annotations

import types
from collections.abc import Iterable
from typing import Any

import pytest
import toy_plugin

import histo.manager as manager
from histo import ComponentSpec, hookimpl
from histo.errors import DuplicateComponentError
from histo.manager import Plugins


def test_default_plugins_register_through_hooks() -> None:
    plugins = Plugins(load_entry_points=False, env={})
    names = [p.name for p in plugins.plugins()]
    assert "stages" in names
    assert all(p.package == "histo-mml" and p.default for p in plugins.plugins())
    assert not plugins.failures, plugins.failures


def test_register_fixture_adds_components(register_plugin: Any) -> None:
    plugins = register_plugin(toy_plugin, "toy")
    assert "write_numbers" in plugins.registry("stages")
    entry = plugins.registry("token_aggregators").get("toy_topk")
    assert (entry.plugin, entry.package) == ("toy", "<test>")


def test_broken_hook_is_reported_not_raised(register_plugin: Any) -> None:
    class Broken:
        @hookimpl
        def histo_tasks(self) -> Iterable[ComponentSpec[Any]]:
            raise RuntimeError("boom")

    plugins = register_plugin(Broken(), "broken")
    assert len(plugins.registry("tasks")) == 0 or "broken" not in {
        e.plugin for e in plugins.registry("tasks")
    }
    assert any(f.plugin == "broken" and f.phase == "hook" and "boom" in f.message for f in plugins.failures)


def test_hook_returning_wrong_type_is_reported(register_plugin: Any) -> None:
    class Wrong:
        @hookimpl
        def histo_tasks(self) -> Iterable[Any]:
            return ["not a spec"]

    plugins = register_plugin(Wrong(), "wrong")
    plugins.registry("tasks")
    assert any(f.plugin == "wrong" and "ComponentSpec" in f.message for f in plugins.failures)


def test_misspelt_hook_is_reported(register_plugin: Any) -> None:
    class Misspelt:
        @hookimpl
        def histo_taskz(self) -> Iterable[Any]:
            return []

    plugins = register_plugin(Misspelt(), "misspelt")
    assert any(f.plugin == "misspelt" and f.phase == "register" for f in plugins.failures)


def test_conflicting_names_name_both_packages(histo_plugins: Plugins) -> None:
    histo_plugins.register(toy_plugin, "toy", package="histo-toy")
    clone = types.ModuleType("clone")
    clone.histo_token_aggregators = toy_plugin.histo_token_aggregators  # type: ignore[attr-defined]
    histo_plugins.register(clone, "clone", package="histo-clone")
    conflicts = [f for f in histo_plugins.failures if f.phase == "conflict"]
    registry = histo_plugins.registry("token_aggregators")
    conflicts = [f for f in histo_plugins.failures if f.phase == "conflict"]
    assert conflicts and "histo-toy" in conflicts[0].message and "histo-clone" in conflicts[0].message
    with pytest.raises(DuplicateComponentError):
        registry.get("toy_topk")


class FakeDist:
    name = "histo-fake"
    version = "9.9"


class FakeEntryPoint:
    def __init__(self, name: str, target: Any) -> None:
        self.name, self.target, self.dist = name, target, FakeDist()

    def load(self) -> Any:
        if isinstance(self.target, Exception):
            raise self.target
        return self.target


@pytest.fixture
def fake_entry_points(monkeypatch: pytest.MonkeyPatch) -> list[FakeEntryPoint]:
    points = [
        FakeEntryPoint("toy", toy_plugin),
        FakeEntryPoint("broken", ImportError("No module named 'missing_dependency'")),
    ]
    monkeypatch.setattr(manager, "entry_points", lambda group: points if group == "histo" else [])
    return points


def test_entry_points_are_discovered_and_broken_ones_reported(fake_entry_points: Any) -> None:
    plugins = Plugins(env={})
    entry = plugins.registry("stages").get("write_numbers")
    assert (entry.package, entry.version, entry.plugin) == ("histo-fake", "9.9", "toy")
    broken = [f for f in plugins.failures if f.plugin == "broken"]
    assert broken and broken[0].phase == "import" and "missing_dependency" in broken[0].message


def test_disable_list_blocks_default_and_third_party(fake_entry_points: Any) -> None:
    plugins = Plugins(env={"HISTO_DISABLE_PLUGINS": "toy, stages"})
    names = {p.name for p in plugins.plugins()}
    assert "toy" not in names and "stages" not in names
    assert "write_numbers" not in plugins.registry("stages")


def test_allow_list_restricts_third_party(fake_entry_points: Any) -> None:
    only_toy = Plugins(env={"HISTO_PLUGINS": "toy"})
    assert {p.name for p in only_toy.plugins() if not p.default} == {"toy"}
    assert not [f for f in only_toy.failures if f.plugin == "broken"]
    none = Plugins(env={"HISTO_PLUGINS": ""})
    assert {p.name for p in none.plugins() if not p.default} == set()
    assert any(p.default for p in none.plugins())


def test_cli_survives_broken_plugin(fake_entry_points: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from histo.cli import main
    from histo.manager import set_plugins

    set_plugins(None)
    try:
        assert main(["plugins"]) == 0
    finally:
        set_plugins(None)
    captured = capsys.readouterr()
    assert "write_numbers" in captured.out
    assert "broken" in captured.err and "missing_dependency" in captured.err
