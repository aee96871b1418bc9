"""One registry for every policy kind, so the executor and the simulator find policies by name.

A policy registers itself once, where it is defined::

    @register("tree", "dynamic")
    class Dynamic: ...

and both worlds resolve it with ``get("tree", "dynamic")``. The first line of the docstring is
the description that ``specgrove policies`` prints.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

KINDS = ("tree", "batch-budget", "scheduler", "router")


class UnknownPolicyError(ValueError):
    """An unknown policy kind or name; the message lists the valid ones."""


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    obj: Any
    description: str


_REGISTRY: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
# Modules that hold registered policies; imported on first lookup so that registration is
# complete whichever module the caller happened to import first.
_POLICY_MODULES = ("specgrove.policies",)
_loaded = False


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in _POLICY_MODULES:
            importlib.import_module(module)


def _check_kind(kind: str) -> None:
    if kind not in _REGISTRY:
        raise UnknownPolicyError(f"unknown policy kind {kind!r}; valid kinds: {', '.join(KINDS)}")


def register(kind: str, name: str) -> Callable[[Any], Any]:
    """Class or function decorator: make ``obj`` findable as (kind, name)."""
    _check_kind(kind)

    def decorate(obj: Any) -> Any:
        table = _REGISTRY[kind]
        if name in table and table[name].obj is not obj:
            raise ValueError(f"{kind} policy {name!r} is registered twice")
        doc = (obj.__doc__ or "").strip().splitlines()
        table[name] = Entry(kind, name, obj, doc[0] if doc else "")
        return obj

    return decorate


def get(kind: str, name: str) -> Any:
    """The registered object for (kind, name); unknown names list the valid ones."""
    _check_kind(kind)
    _ensure_loaded()
    table = _REGISTRY[kind]
    if name not in table:
        valid = ", ".join(sorted(table)) or "(none registered)"
        raise UnknownPolicyError(f"unknown {kind} policy {name!r}; valid: {valid}")
    return table[name].obj


def create(kind: str, name: str, **kwargs: Any) -> Any:
    """Instantiate (or call) the registered policy with keyword options."""
    return get(kind, name)(**kwargs)


def names(kind: str) -> list[str]:
    _check_kind(kind)
    _ensure_loaded()
    return sorted(_REGISTRY[kind])


def entries() -> list[Entry]:
    """Every registered policy, grouped by kind in ``KINDS`` order, names sorted."""
    _ensure_loaded()
    return [_REGISTRY[k][n] for k in KINDS for n in sorted(_REGISTRY[k])]
