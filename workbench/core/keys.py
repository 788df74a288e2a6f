"""Configs as dotted keys (``loss.temperature``), for every caller that sets or compares them: the Python API's
keywords, a sweep's trial parameters, the runs table's comparison of runs, a sweep folder's check and resume.

    apply(cfg, {"loss.temperature": 0.1, "loss.name": "dcl"})   # names first: a new loss resets its parameters
    differences([run_a.to_dict(), run_b.to_dict()])              # [("loss.temperature", [0.1, 0.2]), ...]
"""
from __future__ import annotations

from typing import Any

import tomli_w

# applied before their parameters: choosing a loss, an encoder or a preset resets the keys that depend on it
NAME_KEYS = ("loss.name", "method.name", "model.encoder", "augment.preset", "optim.name", "data.name")
UNSET = "(unset)"  # the value shown for a key a config does not have


def flat(tree: dict, skip: tuple[str, ...] = ("meta",), prefix: str = "") -> dict[str, Any]:
    """A nested dict as {dotted key: value}; tables nest, lists are values; top-level tables in ``skip`` left out."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if not prefix and k in skip:
            continue
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(flat(v, (), key))
        else:
            out[key] = v
    return out


def plain(value: Any) -> Any:
    """``value`` with tuples as lists (a TOML round trip gives lists), so equal settings compare equal."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def differences(trees: list[dict], missing: Any = None) -> list[tuple[str, list]]:
    """[(dotted key, [value in each tree])] for every key whose value is not the same in all ``trees``, sorted by key;
    ``missing`` stands for a key a tree lacks."""
    flats = [flat(t) for t in trees]
    keys = sorted(set().union(*flats)) if flats else []
    out = []
    for k in keys:
        values = [f.get(k, missing) for f in flats]
        if any(plain(v) != plain(values[0]) for v in values[1:]):
            out.append((k, values))
    return out


def toml_literal(value: Any) -> str:
    """``value`` as the TOML text ``--set KEY=TEXT`` takes; ValueError when TOML cannot hold it."""
    try:
        return tomli_w.dumps({"v": list(value) if isinstance(value, tuple) else value}).split("=", 1)[1].strip()
    except TypeError as exc:
        raise ValueError(str(exc)) from None


def name_keys_first(items) -> list[tuple[str, Any]]:
    """(key, value) pairs with NAME_KEYS first, otherwise in their order."""
    return sorted(items, key=lambda kv: kv[0] not in NAME_KEYS)


def apply(cfg, keys: dict[str, Any]):
    """``cfg`` with dotted ``keys`` set as ``--set`` sets them, names before their parameters."""
    return cfg.with_overrides([f"{k}={toml_literal(v)}" for k, v in name_keys_first(keys.items())])
