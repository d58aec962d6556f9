"""Typed ``--set key=value`` overrides for dataclass configs.

A float field never takes nan or +-inf unless its field says ``metadata={"nonfinite": True}``.
A field states its allowed values in its metadata: ``ge``/``gt`` (>=, >) and ``le``/``lt``
(<=, <), and ``note`` (what the edge values mean), e.g.
``lr: float = field(default=1e-4, metadata={"gt": 0})`` or, the same, ``bounded(1e-4, gt=0)``.
Bounds apply to each number of a tuple or list field and to the value of an Optional one
(``None`` is always allowed there). A subclass that redeclares a field without bounds keeps
its base class's. Metadata is not part of :func:`config_hash`.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
import types
import typing
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any, Literal, Union

from avbench.errors import ConfigError

_TRUE = {"1", "true", "yes", "on"}
#: the metadata keys of a bound, and how a message says each
_BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
_FALSE = {"0", "false", "no", "off"}


def parse_set_items(items: list[str] | None) -> dict[str, str]:
    """Split ``["a=1", "b=x"]`` into a dict; a later key wins; bad items are errors."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"bad --set {item!r}: expected KEY=VALUE")
        out[key.replace("-", "_")] = value.strip()
    return out


def _convert(key: str, raw: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if type(None) in args and (raw is None or str(raw).lower() in {"none", "null", ""}):
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(key, raw, a)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"bad value {raw!r} for {key}")
    if origin is Literal:
        for a in args:
            if str(a) == str(raw):
                return a
        choices = ", ".join(str(a) for a in args)
        raise ConfigError(f"bad value {raw!r} for {key}: choose one of {choices}")
    if origin in (tuple, list):
        parts = raw if isinstance(raw, list | tuple) else [p for p in str(raw).split(",") if p]
        inner = args[0] if args else str
        vals = [_convert(key, p, inner) for p in parts]
        return tuple(vals) if origin is tuple else vals
    if tp is bool:
        if isinstance(raw, bool):
            return raw
        s = str(raw).lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
        raise ConfigError(f"bad value {raw!r} for {key}: expected true or false")
    if tp is int:
        if isinstance(raw, bool):
            raise ConfigError(f"bad value {raw!r} for {key}: expected an integer")
        try:
            return int(str(raw))
        except ValueError:
            raise ConfigError(f"bad value {raw!r} for {key}: expected an integer") from None
    if tp is float:
        try:
            return float(str(raw))
        except ValueError:
            raise ConfigError(f"bad value {raw!r} for {key}: expected a number") from None
    if tp is str or tp is Any:
        return str(raw)
    raise ConfigError(f"{key}: values of type {tp!r} cannot be set from the command line")


def bounded(default: Any, *, ge: float | None = None, gt: float | None = None,
            le: float | None = None, lt: float | None = None, note: str = "",
            nonfinite: bool = False) -> Any:
    """A dataclass field with ``default`` whose values must lie within the given bounds
    (``ge`` >=, ``gt`` >, ``le`` <=, ``lt`` <); ``note`` says what the edge values mean
    ("0 = every segment"); ``nonfinite=True`` lets a float field take nan and +-inf."""
    meta: dict[str, Any] = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt))
                            if v is not None}
    if note:
        meta["note"] = note
    if nonfinite:
        meta["nonfinite"] = True
    return dataclasses.field(default=default, metadata=meta)


def field_bounds(cls: type, name: str) -> Mapping[str, Any]:
    """The bound metadata of field ``name`` of config class ``cls``: that of the nearest class
    in the MRO that declares some (a redeclared default keeps the base's bounds)."""
    for klass in cls.__mro__:
        f = vars(klass).get("__dataclass_fields__", {}).get(name)
        if f is not None and any(k in f.metadata for k in (*_BOUNDS, "nonfinite", "note")):
            return f.metadata
    return {}


def describe_bounds(meta: Mapping[str, Any]) -> str:
    """``">= 1"``, ``"in (0, 1]"``, ``"> 0 (0: off)"``...: the bounds as a message says them."""
    lower = [k for k in ("gt", "ge") if k in meta][:1]
    upper = [k for k in ("lt", "le") if k in meta][:1]
    if lower and upper:
        lo, hi = lower[0], upper[0]
        text = (f"in {'(' if lo == 'gt' else '['}{meta[lo]:g}, "
                f"{meta[hi]:g}{')' if hi == 'lt' else ']'}")
    else:
        text = " and ".join(f"{_BOUNDS[k]} {meta[k]:g}" for k in lower + upper)
    note = meta.get("note", "")
    return f"{text} ({note})" if text and note else text or note


def check_value(key: str, raw: Any, value: Any, meta: Mapping[str, Any]) -> None:
    """Refuse a converted ``value`` (given as ``raw``) that is nan/inf where the field does
    not allow it, or outside the field's bounds: one line naming the key and the value."""
    for v in value if isinstance(value, list | tuple) else (value,):
        if v is None or isinstance(v, bool) or not isinstance(v, int | float):
            continue
        if isinstance(v, float) and not math.isfinite(v):
            if meta.get("nonfinite"):
                continue
            raise ConfigError(f"bad value {raw!r} for {key}: expected a finite number "
                              f"(nan and inf are not allowed)")
        ok = all(_within(v, op, meta[op]) for op in _BOUNDS if op in meta)
        if not ok:
            raise ConfigError(f"bad value {raw!r} for {key}: {key} must be "
                              f"{describe_bounds(meta)}")


def _within(v: float, op: str, bound: float) -> bool:
    return {"ge": v >= bound, "gt": v > bound, "le": v <= bound, "lt": v < bound}[op]


def config_fields(cls: type) -> dict[str, Any]:
    """Field name -> resolved type of a config dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def apply_overrides(config: Any, overrides: dict[str, Any], who: str = "config") -> Any:
    """Return a copy of dataclass ``config`` with ``overrides`` applied, type-checked.

    Unknown keys are rejected with the list of valid ones; values are converted to the
    field's type (int, float, bool, str, Literal, Optional, tuple/list of those) and checked
    against the field's bounds (see the module docstring); floats must be finite.
    """
    cls = type(config)
    fields = config_fields(cls)
    changes: dict[str, Any] = {}
    for key, raw in overrides.items():
        if key not in fields:
            valid = ", ".join(sorted(fields)) or "(none)"
            raise ConfigError(f"unknown key {key!r} for {who}; valid keys: {valid}")
        changes[key] = _convert(key, raw, fields[key])
        check_value(key, raw, changes[key], field_bounds(cls, key))
    try:
        return dataclasses.replace(config, **changes)
    except (ValueError, TypeError) as e:  # __post_init__ validation
        raise ConfigError(f"bad {who} settings: {e}") from None


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass (or an already resolved config dict) as a plain dict."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    if isinstance(config, Mapping):
        return dict(config)
    raise ConfigError(f"a detector config must be a dataclass (or a dict), not "
                      f"{type(config).__name__}")


def _canonical(value: Any, key: str) -> Any:
    """``value`` as JSON with one spelling per value: tuples as lists, sets sorted, paths as
    text, enums by value; anything else must be a JSON scalar or print the same way in every
    process (no ``<object at 0x...>``)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _canonical(dataclasses.asdict(value), key)
    if isinstance(value, Mapping):
        return {str(k): _canonical(v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v, key) for v in value]
    if isinstance(value, set | frozenset):
        items = [_canonical(v, key) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, enum.Enum):
        return _canonical(value.value, key)
    if isinstance(value, PurePath):
        return value.as_posix()
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _canonical(value.item(), key)
    text = str(value)
    if " at 0x" in text:
        raise ConfigError(f"config value {key} ({type(value).__name__}) cannot be hashed: it "
                          f"prints differently in every process")
    return text


def config_hash(config: Any) -> str:
    """16 hex digits of SHA-256 over the resolved config (a config dataclass, or its dict
    as :func:`config_to_dict` and ``engine.run.portable`` give it): equal configs give equal
    hashes in every process, whatever ``PYTHONHASHSEED``; configs differing in one value do
    not."""
    canon = _canonical(config_to_dict(config), "config")
    blob = json.dumps(canon, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
