"""Named registries of pluggable parts (datasets, augmentations, losses, methods, encoders, optimisers).

One registration style: the decorator on the factory where it is defined,

    @LOSSES.register("ntxent")
    class NTXent(nn.Module): ...

One contract for every registry: a factory is called as ``factory(**context, **params)``.

- ``context`` is what the caller supplies, declared once per registry (a dataset's ``split``,
  an encoder's ``in_channels`` / ``image_size``, an optimiser's ``model``, a method's ``loss``);
- ``params`` are the factory's other keyword parameters, each with a default: they are the
  user-facing parameters. Their type comes from the default, their allowed values from a
  ``Literal[...]`` annotation and their help text from the docstring's ``name: text`` lines
  (Google style, under "Args:" or anywhere). The CLI lists them, the window builds its forms
  (combo boxes for choices, tooltips from help) and the config validates against them.
  A factory may instead declare them as a ``Params`` dataclass (a ``TypedParams``: fields with
  defaults, checked on construction); it is then called as ``factory(**context, params=Params(...))``.

Callers go through ``build(name, params, **context)``; ``select(name, section)`` picks an
entry's parameters from a config section.
"""
from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar


class ConfigError(ValueError):
    """A user-facing configuration or input error; its message names what is wrong and what to do.

    ``field`` is the config key it is about ("train.batch_size", "loss.temperature"), or None when it is about no
    single key (a file, a run folder): a form outlines that key's editor without reading the message."""

    def __init__(self, message: str = "", field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    kind: type  # bool | int | float | str | tuple (a list of numbers)
    help: str = ""  # from the factory's docstring ("" when it has none)
    choices: tuple = ()  # allowed values (from a Literal annotation); () = any value of ``kind``


@dataclass
class Entry:
    name: str
    factory: Callable
    doc: str
    params: tuple[Param, ...]
    meta: dict
    typed: type | None = None  # the factory's ``Params`` dataclass, when it declares one

    @property
    def summary(self) -> str:
        """The docstring's first paragraph as one sentence (a trailing ':' or ',' that leads into a formula ends it)."""
        para = inspect.cleandoc(self.doc or "").split("\n\n")[0]
        text = " ".join(line.strip() for line in para.splitlines()).rstrip(":,; ")
        return text + "." if text and not text.endswith(".") else text


_HELP_LINE = re.compile(r"^\s*[`*]*(\w+)[`*]*\s*(?:\([^)]*\))?\s*:\s+(\S.*)$")


def parse_help(doc: str, names: set[str]) -> dict[str, str]:
    """``{name: text}`` from docstring lines ``name: text`` (or ``name (type): text``) for the given
    parameter names; more-indented lines that follow continue the text."""
    out: dict[str, str] = {}
    current, indent = None, 0
    for line in doc.splitlines():
        m = _HELP_LINE.match(line)
        if m and m.group(1) in names:
            current, indent = m.group(1), len(line) - len(line.lstrip())
            out[current] = m.group(2).strip()
        elif current and line.strip() and len(line) - len(line.lstrip()) > indent:
            out[current] += " " + line.strip()
        else:
            current = None
    return out


def _signature(factory: Callable) -> inspect.Signature:
    try:
        return inspect.signature(factory, eval_str=True)
    except (NameError, TypeError, SyntaxError):  # an annotation that cannot be evaluated here
        return inspect.signature(factory)


def _choices(annotation: Any) -> tuple:
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    return ()


def params_of(factory: Callable, context: tuple[str, ...], doc: str = "") -> tuple[Param, ...]:
    """The user-facing parameters of ``factory``: keyword parameters with defaults, minus ``context``."""
    sig = _signature(factory)
    names = {p.name for p in sig.parameters.values()}
    helps = parse_help(doc, names)
    out = []
    for p in sig.parameters.values():
        if p.name in context or p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is inspect.Parameter.empty:
            continue
        default = tuple(p.default) if isinstance(p.default, list) else p.default
        kind = _kind(default)
        out.append(Param(p.name, default, kind, helps.get(p.name, ""), _choices(p.annotation)))
    return tuple(out)


def _doc(factory: Callable, typed: type | None = None) -> str:
    """The factory's docstring, plus its ``__init__``'s for a class (where Args are often listed) and its
    ``Params`` dataclass's (where typed parameters are described)."""
    doc = inspect.getdoc(factory) or ""
    if inspect.isclass(factory) and factory.__init__.__doc__:
        doc += "\n\n" + inspect.cleandoc(factory.__init__.__doc__)
    if typed is not None and typed.__doc__ and not typed.__doc__.startswith(typed.__name__ + "("):  # not the generated one
        doc += "\n\n" + inspect.cleandoc(typed.__doc__)
    return doc


def _typed(factory: Callable) -> type | None:
    """The factory's ``Params`` dataclass, or None when its keyword parameters are its parameters."""
    typed = getattr(factory, "Params", None)
    return typed if inspect.isclass(typed) and dataclasses.is_dataclass(typed) else None


def _kind(default: Any) -> type:
    return type(default) if default is not None else str


@dataclass
class TypedParams:
    """Base of a factory's typed parameters (``factory.Params``): each field has a default, and construction
    coerces every value to its default's type and runs ``check``; a bad value raises ConfigError naming
    ``SECTION.field`` (e.g. ``method.queue_size``). Document the fields as ``name: text`` lines in the docstring."""

    section: ClassVar[str] = ""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            setattr(self, f.name, coerce(getattr(self, f.name), _kind(default), self.where(f.name)))
        self.check()

    def check(self) -> None:
        """Range checks of the subclass (``self.require(...)``); none here."""

    def where(self, name: str) -> str:
        return f"{self.section}.{name}" if self.section else name

    def require(self, cond: bool, name: str, msg: str) -> None:
        if not cond:
            raise ConfigError(f"{self.where(name)}: {msg}")


class Registry:
    """name -> factory, with the contract in the module docstring.

    ``context`` names the arguments callers pass to every factory of this registry; entries
    registered with ``hidden=True`` can be built and validated but are left out of ``names()``.
    """

    def __init__(self, kind: str, context: tuple[str, ...] = ()):
        self.kind = kind
        self.context = tuple(context)
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, **meta):
        def deco(factory):
            typed = _typed(factory)
            doc = _doc(factory, typed)
            params = params_of(typed, (), doc) if typed else params_of(factory, self.context, doc)
            self._entries[name] = Entry(name, factory, doc, params, meta, typed)
            return factory

        return deco

    def names(self) -> list[str]:
        """Names offered to users (hidden entries left out)."""
        return [n for n, e in self._entries.items() if not e.meta.get("hidden")]

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str) -> Entry:
        if name not in self._entries:
            raise ConfigError(f"unknown {self.kind} '{name}'; choose from: {', '.join(self.names())}")
        return self._entries[name]

    def select(self, name: str, section: Any) -> dict:
        """The values of ``name``'s parameters found in ``section`` (a mapping or an object's attributes)."""
        get = section.get if isinstance(section, dict) else (lambda k, d=None: getattr(section, k, d))
        missing = object()
        values = {p.name: get(p.name, missing) for p in self.get(name).params}
        return {k: v for k, v in values.items() if v is not missing}

    def check_params(self, name: str, params: dict, where: str) -> dict:
        """Return ``params`` coerced to the declared types; raise ConfigError naming the bad key."""
        entry = self.get(name)
        declared = {p.name: p for p in entry.params}
        out = {}
        for key, value in params.items():
            if key not in declared:
                choices = ", ".join(declared) or "(none)"
                raise ConfigError(f"{where}.{key}: unknown parameter of {self.kind} '{name}'; choose from: {choices}",
                                  f"{where}.{key}")
            p = declared[key]
            out[key] = coerce(value, p.kind, f"{where}.{key}")
            if p.choices and out[key] not in p.choices:
                raise ConfigError(f"{where}.{key}: choose from: {', '.join(map(str, p.choices))}; got {out[key]!r}", f"{where}.{key}")
        return out

    def typed(self, name: str, params: dict, where: str):
        """``name``'s ``Params`` dataclass built from ``params`` (checked as ``check_params`` does, then by its own
        ``check``); ConfigError naming the bad key. For an entry without one: TypeError."""
        entry = self.get(name)
        if entry.typed is None:
            raise TypeError(f"{self.kind} '{name}' declares no Params dataclass")
        return entry.typed(**self.check_params(name, params, where))

    def build(self, name: str, params: dict | None = None, **context):
        """``factory(**context, **params)``; a ValueError/TypeError from the factory becomes a ConfigError."""
        entry = self.get(name)
        missing = [c for c in self.context if c not in context]
        if missing:
            raise TypeError(f"building {self.kind} '{name}' needs {', '.join(missing)}")
        try:
            if entry.typed is not None:
                given = params if isinstance(params, entry.typed) else entry.typed(**(params or {}))
                return entry.factory(**context, params=given)
            return entry.factory(**context, **(params or {}))
        except ConfigError:
            raise
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{self.kind} '{name}': {exc}", _named_param(entry, exc)) from None

    def describe(self) -> str:
        """The listing the CLI prints: each entry's first doc line and its parameters."""
        lines = []
        for name in self.names():
            e = self._entries[name]
            lines.append(f"{e.name}: {e.summary}")
            for p in e.params:
                allowed = f"  one of: {', '.join(map(str, p.choices))}" if p.choices else ""
                lines.append(f"    {p.name} = {p.default!r}{allowed}" + (f"  # {p.help}" if p.help else ""))
        return "\n".join(lines)


def _named_param(entry: Entry, exc: Exception) -> str | None:
    """The parameter a factory's error is about: its own ``field``, else the declared parameter its message begins
    with ("temperature must be > 0" -> "temperature"); None when it names none."""
    if getattr(exc, "field", None):
        return exc.field
    words = str(exc).replace(":", " ").split()
    return words[0] if words and words[0] in {p.name for p in entry.params} else None


def _to_bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise ConfigError(f"{where}: expected true or false, got {value!r}", where)


def _to_int(value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise ConfigError(f"{where}: expected an integer, got {value!r}", where)


def _to_float(value: Any, where: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ConfigError(f"{where}: expected a number, got {value!r}", where)


def _to_tuple(value: Any, where: str) -> tuple:
    if isinstance(value, str):
        value = [v for v in value.strip("[]() ").split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        try:
            return tuple(float(v) if not isinstance(v, (int, float)) else v for v in value)
        except ValueError:
            raise ConfigError(f"{where}: expected a list of numbers, got {value!r}", where) from None
    raise ConfigError(f"{where}: expected a list such as [0.2, 1.0], got {value!r}", where)


def _to_str(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    raise ConfigError(f"{where}: expected a string, got {value!r}", where)


_COERCE = {bool: _to_bool, int: _to_int, float: _to_float, tuple: _to_tuple, str: _to_str}


def coerce(value: Any, kind: type, where: str) -> Any:
    """Coerce a value read from TOML/CLI/GUI to ``kind``, or raise ConfigError naming ``where``."""
    convert = _COERCE.get(kind)
    return value if convert is None else convert(value, where)
