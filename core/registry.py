"""A typed registry per component kind: unique names, conflicts that name both packages, helpful misses."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .errors import DuplicateComponentError, UnavailableComponentError, UnknownComponentError
from .specs import ComponentSpec

T = TypeVar("T")


@dataclass(frozen=True)
class Registered(Generic[T]):
    """A spec together with where it came from."""

    kind: str
    spec: ComponentSpec[T]
    plugin: str  # the plugin's registered name (entry point name or default module)
    package: str  # the distribution that ships it
    version: str

    @property
    def name(self) -> str:
        return self.spec.name


class Registry(Generic[T]):
    """The components of one kind, by name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Registered[T]] = {}
        self.conflicts: dict[str, str] = {}  # name -> message, for names two plugins claim
        # components a plugin offers but that cannot be used (e.g. defaults breaking their config)
        self.unavailable: dict[str, tuple[Registered[T], str]] = {}
        # failures of plugins that may have provided components of this kind (import, hook errors)
        self.plugin_failures: list[str] = []

    def add(self, entry: Registered[T]) -> None:
        existing = self._entries.get(entry.name)
        if existing is not None:
            message = (
                f"{self.kind} {entry.name!r} is registered twice: by {existing.package} "
                f"(plugin {existing.plugin}) and by {entry.package} (plugin {entry.plugin}). "
                f"Uninstall one of them or disable a plugin with HISTO_DISABLE_PLUGINS={entry.plugin}."
            )
            self.conflicts[entry.name] = message
            raise DuplicateComponentError(message)
        self._entries[entry.name] = entry

    def add_unavailable(self, entry: Registered[T], reason: str) -> None:
        """Record a component that its plugin offers but histo refuses, so a recipe naming it says why."""
        self.unavailable[entry.name] = (entry, reason)

    def problem(self, name: str) -> str | None:
        """Why `name` cannot be used, or None when it can (or is simply not installed)."""
        if name in self.conflicts:
            return self.conflicts[name]
        if name in self.unavailable:
            return self.unavailable[name][1]
        return None

    def get(self, name: str) -> Registered[T]:
        if name in self.conflicts:
            raise DuplicateComponentError(self.conflicts[name])
        if name in self.unavailable and name not in self._entries:
            entry, reason = self.unavailable[name]
            raise UnavailableComponentError(
                f"{self.kind} {name!r} from {entry.package} {entry.version}".rstrip()
                + f" (plugin {entry.plugin}) is unavailable: {reason}"
            )
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownComponentError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(str(name), list(self._entries), n=3, cutoff=0.6)
        message = f"unknown {self.kind} {name!r}"
        if close:
            message += f"; did you mean {' or '.join(repr(c) for c in close)}?"
        else:
            available = ", ".join(sorted(self._entries)) or "none installed"
            message += f"; available: {available}"
        if self.plugin_failures:
            message += (" " if message.endswith("?") else ". ") + (
                f"{len(self.plugin_failures)} plugin(s) failed to load and may provide it "
                "(see `histo plugins`): " + "; ".join(self.plugin_failures)
            )
        return message

    def build(self, name: str, params: Any = None) -> T:
        """Validate `params` against the component's config and construct it."""
        return self.get(name).spec.build(params)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Registered[T]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return sorted(self._entries)
