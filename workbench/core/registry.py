"""Named registries of pluggable parts (datasets, augmentations, losses, encoders, optimisers).

A registered factory's keyword parameters (with defaults) are its user-facing parameters: the
CLI lists them, the GUI builds its forms from them and the config checks names and types
against them.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable


class ConfigError(ValueError):
    """A user-facing configuration or input error; its message names what is wrong and what to do."""


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    kind: type
    help: str = ""


@dataclass
class Entry:
    name: str
    factory: Callable
    doc: str
    params: tuple[Param, ...]
    meta: dict


def _params_of(factory: Callable, skip: tuple[str, ...]) -> tuple[Param, ...]:
    sig = inspect.signature(factory)
    out = []
    for p in sig.parameters.values():
        if p.name in skip or p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is inspect.Parameter.empty:
            continue
        default = p.default
        kind = type(default) if default is not None else str
        if kind is list:
            kind = tuple
        out.append(Param(p.name, tuple(default) if isinstance(default, list) else default, kind))
    return tuple(out)


class Registry:
    def __init__(self, kind: str, skip: tuple[str, ...] = ()):
        self.kind = kind
        self.skip = skip
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, **meta):
        def deco(factory):
            doc = inspect.getdoc(factory) or ""
            self._entries[name] = Entry(name, factory, doc, _params_of(factory, self.skip), meta)
            return factory

        return deco

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str) -> Entry:
        if name not in self._entries:
            raise ConfigError(f"unknown {self.kind} '{name}'; choose from: {', '.join(self.names())}")
        return self._entries[name]

    def check_params(self, name: str, params: dict, where: str) -> dict:
        """Return ``params`` coerced to the declared types; raise ConfigError naming the bad key."""
        entry = self.get(name)
        declared = {p.name: p for p in entry.params}
        out = {}
        for key, value in params.items():
            if key not in declared:
                choices = ", ".join(declared) or "(none)"
                raise ConfigError(f"{where}.{key}: unknown parameter of {self.kind} '{name}'; choose from: {choices}")
            out[key] = coerce(value, declared[key].kind, f"{where}.{key}")
        return out

    def build(self, name: str, params: dict | None = None, **extra):
        entry = self.get(name)
        try:
            return entry.factory(**extra, **(params or {}))
        except ConfigError:
            raise
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{self.kind} '{name}': {exc}") from None

    def describe(self) -> str:
        lines = []
        for e in self._entries.values():
            first = e.doc.splitlines()[0] if e.doc else ""
            lines.append(f"{e.name}: {first}")
            for p in e.params:
                lines.append(f"    {p.name} = {p.default!r}")
        return "\n".join(lines)


def coerce(value: Any, kind: type, where: str) -> Any:
    """Coerce a value read from TOML/CLI/GUI to ``kind``, or raise ConfigError naming ``where``."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if kind is tuple:
        if isinstance(value, str):
            value = [v for v in value.strip("[]() ").split(",") if v.strip()]
        if isinstance(value, (list, tuple)):
            try:
                return tuple(float(v) if not isinstance(v, (int, float)) else v for v in value)
            except ValueError:
                raise ConfigError(f"{where}: expected a list of numbers, got {value!r}") from None
        raise ConfigError(f"{where}: expected a list such as [0.2, 1.0], got {value!r}")
    if kind is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value
