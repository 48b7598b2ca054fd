"""The plugin manager: a typed facade over pluggy. Nothing else in histo touches `pm.hook`.

Default plugins register through the same hooks as third-party packages found through the `histo`
entry-point group. Loading is controlled by two environment variables:

- HISTO_DISABLE_PLUGINS=a,b   never load these plugins (default or third-party), by plugin name
- HISTO_PLUGINS=a,b           load only these third-party plugins ("" loads none)

A plugin that fails to import or whose hook raises is recorded in `failures` and skipped, so one broken
package cannot take the CLI down. A component whose config defaults break the config's own constraints
is recorded too (phase "config") and kept out of use, with the reason, in its registry.
"""

from __future__ import annotations

import importlib
import os
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

import pluggy

from . import DISTRIBUTION, __version__, hookspecs
from .configcheck import default_problems
from .errors import DuplicateComponentError
from .kinds import KINDS, kind
from .registry import Registered, Registry
from .specs import ComponentSpec

ENTRY_POINT_GROUP = "histo"
DEFAULT_PLUGINS_MODULE = "histo.plugins"


@dataclass(frozen=True)
class PluginFailure:
    plugin: str
    package: str
    phase: str  # "import", "register", "hook", "conflict" or "config"
    message: str

    def __str__(self) -> str:
        return f"plugin {self.plugin} ({self.package}) failed at {self.phase}: {self.message}"


@dataclass(frozen=True)
class PluginInfo:
    name: str
    package: str
    version: str
    default: bool
    module: str = ""  # the module (or object's module) holding the hooks


def _csv_env(env: Mapping[str, str], key: str) -> set[str] | None:
    if key not in env:
        return None
    return {part.strip() for part in env[key].split(",") if part.strip()}


class Plugins:
    """Loads plugins and exposes one `Registry` per component kind."""

    def __init__(
        self,
        *,
        load_defaults: bool = True,
        load_entry_points: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if env is None else env
        self.disabled = _csv_env(env, "HISTO_DISABLE_PLUGINS") or set()
        self.allowed = _csv_env(env, "HISTO_PLUGINS")
        self._pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self._pm.add_hookspecs(hookspecs)
        self._info: dict[str, PluginInfo] = {}
        self._failures: list[PluginFailure] = []
        self._registries: dict[str, Registry[Any]] | None = None
        if load_defaults:
            self._load_defaults()
        if load_entry_points:
            self._load_entry_points()

    # -- loading ---------------------------------------------------------------------------------
    def register(
        self,
        plugin: ModuleType | object,
        name: str | None = None,
        *,
        package: str = "<local>",
        version: str = "",
        default: bool = False,
    ) -> None:
        """Register a module or object carrying `@hookimpl` functions (tests, embedding apps)."""
        plugin_name = name or getattr(plugin, "__name__", None) or repr(plugin)
        if plugin_name in self.disabled:
            return
        try:
            self._pm.register(plugin, name=plugin_name)
        except Exception as exc:  # pluggy validation errors: wrong hook signature
            self._failures.append(PluginFailure(plugin_name, package, "register", str(exc)))
            return
        try:
            self._pm.check_pending()  # a misspelt hook name would otherwise be ignored silently
        except Exception as exc:
            self._pm.unregister(plugin)
            self._failures.append(PluginFailure(plugin_name, package, "register", str(exc)))
            return
        module = plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__module__
        self._info[plugin_name] = PluginInfo(plugin_name, package, version, default, module)
        self._registries = None

    def _load_defaults(self) -> None:
        defaults = importlib.import_module(DEFAULT_PLUGINS_MODULE)
        for module_name in defaults.DEFAULT_PLUGINS:
            short = module_name.rsplit(".", 1)[-1]
            if short in self.disabled or module_name in self.disabled:
                continue
            try:
                module = importlib.import_module(module_name)
            except Exception as exc:
                self._failures.append(PluginFailure(short, DISTRIBUTION, "import", _describe(exc)))
                continue
            self.register(module, short, package=DISTRIBUTION, version=__version__, default=True)

    def _load_entry_points(self) -> None:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            package = dist.name if dist is not None else "<unknown>"
            version = dist.version if dist is not None else ""
            if ep.name in self.disabled or (self.allowed is not None and ep.name not in self.allowed):
                continue
            try:
                module = ep.load()
            except Exception as exc:
                self._failures.append(PluginFailure(ep.name, package, "import", _describe(exc)))
                continue
            self.register(module, ep.name, package=package, version=version)

    # -- registries ------------------------------------------------------------------------------
    @property
    def failures(self) -> list[PluginFailure]:
        """Every plugin failure: import and registration, and (collecting the registries first) hooks
        that raise, name conflicts and components whose config defaults are invalid."""
        self.registries()
        return list(self._failures)

    def registry(self, kind_name: str) -> Registry[Any]:
        kind(kind_name)  # raises on a misspelt kind
        if self._registries is None:
            self._registries = self._collect()
        return self._registries[kind_name]

    def registries(self) -> dict[str, Registry[Any]]:
        if self._registries is None:
            self._registries = self._collect()
        return dict(self._registries)

    def plugins(self) -> list[PluginInfo]:
        return [self._info[name] for name in sorted(self._info)]

    def plugin_info(self, name: str) -> PluginInfo | None:
        """The loaded plugin of that name (entry-point name or default module's short name)."""
        return self._info.get(name)

    def source_digest(self, entry: Registered[Any], memo: dict[Any, str] | None = None) -> str:
        """Hash of a component's code when its version does not pin it (editable or local plugins);
        '' for histo's own plugins and packages installed from an index. See `histo.sources`.
        `memo` shares digests between the components of one package within one recipe load."""
        from .sources import entry_modules, source_digest

        info = self._info.get(entry.plugin)
        modules = entry_modules(entry, info.module if info else "")
        if memo is None:
            return source_digest(entry.package, modules)
        key = (entry.package, tuple(sorted({m.split(".")[0] for m in modules})))
        if key not in memo:
            memo[key] = source_digest(entry.package, modules)
        return memo[key]

    def entries(self) -> Iterable[Registered[Any]]:
        for k in KINDS:
            yield from self.registry(k.name)

    def _collect(self) -> dict[str, Registry[Any]]:
        registries: dict[str, Registry[Any]] = {k.name: Registry(k.name) for k in KINDS}
        self._failures = [f for f in self._failures if f.phase in ("import", "register")]
        early = [str(f) for f in self._failures]
        for k in KINDS:
            hook_failures: list[str] = []
            caller = getattr(self._pm.hook, k.hook)
            for impl in caller.get_hookimpls():
                info = self._info.get(impl.plugin_name) or PluginInfo(impl.plugin_name, "<local>", "", False)
                try:
                    specs = list(impl.function() or ())
                    for spec in specs:
                        if not isinstance(spec, ComponentSpec):
                            raise TypeError(f"{k.hook} returned {type(spec).__name__}, not a ComponentSpec")
                except Exception as exc:
                    failure = PluginFailure(info.name, info.package, "hook", _describe(exc))
                    self._failures.append(failure)
                    hook_failures.append(str(failure))
                    continue
                for spec in specs:
                    entry = Registered(k.name, spec, info.name, info.package, info.version)
                    problems = default_problems(spec.config)
                    if problems:
                        reason = f"config {spec.config.__name__} has invalid defaults: {'; '.join(problems)}"
                        message = f"{k.name} {spec.name!r}: {reason}"
                        self._failures.append(PluginFailure(info.name, info.package, "config", message))
                        registries[k.name].add_unavailable(entry, reason)
                        continue
                    try:
                        registries[k.name].add(entry)
                    except DuplicateComponentError as exc:
                        self._failures.append(PluginFailure(info.name, info.package, "conflict", str(exc)))
            registries[k.name].plugin_failures = early + hook_failures
        return registries


def _describe(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" ({last[0].filename}:{last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


_default: Plugins | None = None


def get_plugins() -> Plugins:
    """The process-wide plugin manager, created on first use."""
    global _default
    if _default is None:
        _default = Plugins()
    return _default


def set_plugins(plugins: Plugins | None) -> None:
    """Replace the process-wide manager (the pytest fixtures use this)."""
    global _default
    _default = plugins
