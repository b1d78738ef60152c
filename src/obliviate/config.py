"""Config dataclass helpers: each field carries ``help`` text (trl style) for CLI and docs."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import MISSING, field, fields
from typing import Any, Literal, TypeVar, get_args, get_origin

from obliviate.errors import ConfigError

C = TypeVar("C")


def opt(default: Any, help: str, **kw: Any) -> Any:  # noqa: A002 - mirrors argparse
    """A dataclass field with a default and a help text (stored in ``metadata['help']``)."""
    if isinstance(default, list | dict | set):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


def config_help(cls: type) -> list[tuple[str, str, Any, str]]:
    """(name, type, default, help) for every field of config class ``cls``."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        default = (
            f.default
            if f.default is not MISSING
            else (f.default_factory() if f.default_factory is not MISSING else None)
        )
        out.append((f.name, _type_name(hints[f.name]), default, f.metadata.get("help", "")))
    return out


def _type_name(t: Any) -> str:
    if get_origin(t) is Literal:
        return "{" + ",".join(str(a) for a in get_args(t)) + "}"
    return getattr(t, "__name__", str(t)).replace("typing.", "")


def _coerce(name: str, t: Any, value: Any) -> Any:
    origin = get_origin(t)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(t) if a is not type(None)]
        is_none = value is None or (isinstance(value, str) and value.lower() in ("none", "null"))
        if is_none and type(None) in get_args(t):
            return None
        errors = []
        for a in args:
            try:
                return _coerce(name, a, value)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"option {name!r}: cannot interpret {value!r} as {t}")
    if origin is Literal:
        choices = get_args(t)
        if value not in choices:
            raise ConfigError(f"option {name!r}: {value!r} is not one of {list(choices)}")
        return value
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v != ""]
        (inner,) = get_args(t)[:1] or (Any,)
        return [_coerce(name, inner, v) for v in value]
    if t is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"option {name!r}: expected a boolean, got {value!r}")
    if t in (int, float, str):
        if t is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"option {name!r}: expected an integer, got {value!r}")
        if isinstance(value, bool) and t is not str:
            raise ConfigError(f"option {name!r}: expected {t.__name__}, got a boolean")
        try:
            return t(value)
        except (TypeError, ValueError):
            raise ConfigError(f"option {name!r}: expected {t.__name__}, got {value!r}") from None
    return value


def build_config(cls: type[C], overrides: dict[str, Any] | None = None, base: C | None = None) -> C:
    """Instantiate ``cls`` (or update ``base``) from ``overrides``, coercing strings to field types.

    Unknown keys and values of the wrong type raise :class:`ConfigError` naming the option.
    """
    overrides = dict(overrides or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for {cls.__name__}; known: {sorted(names)}")
    values = {k: _coerce(k, hints[k], v) for k, v in overrides.items()}
    if base is not None:
        return dataclasses.replace(base, **values)
    return cls(**values)


def parse_set_options(items: list[str] | None) -> dict[str, str]:
    """Parse ``["key=value", …]`` (the CLI's ``--set``) into a dict; malformed items are errors."""
    out: dict[str, str] = {}
    for it in items or []:
        if "=" not in it:
            raise ConfigError(f"--set expects key=value, got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip()] = v.strip()
    return out
