"""Config dataclass helpers: each field carries ``help`` text (trl style) for CLI and docs, and
its type and range, declared once in :func:`opt` and checked by :func:`validate_config`.

Bounds shared by every config: :data:`EPOCHS_MAX` (epochs), :data:`STEPS_MAX` (optimiser steps),
:data:`LR_MAX` (learning rates) and :data:`SEED_MAX` (seeds: integers in [0, 2^63 − 1], the range
of ``torch.manual_seed``; :func:`check_seed` is the one rule for seeds everywhere).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import MISSING, field, fields
from typing import Any, Literal, TypeVar, get_args, get_origin

from obliviate.errors import ConfigError

C = TypeVar("C")


#: Largest number of epochs any config accepts (an absurd value is refused, not run).
EPOCHS_MAX = 10_000
#: Largest step / iteration cap any config accepts.
STEPS_MAX = 10_000_000
#: Largest learning rate any config accepts (every model here diverges far below it).
LR_MAX = 10.0
#: Largest seed (``torch.manual_seed`` takes a signed 64-bit integer); seeds are >= 0.
SEED_MAX = 2**63 - 1

#: Most seeds one run or option may list.
SEEDS_MAX_COUNT = 1000

#: The range keywords of :func:`opt`.
_RANGE_KEYS = ("ge", "gt", "le", "lt", "finite", "choices")


def opt(
    default: Any,
    help: str,  # noqa: A002 - mirrors argparse
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    finite: bool | None = None,
    choices: tuple[Any, ...] | list[Any] | None = None,
    **kw: Any,
) -> Any:
    """A dataclass field with a default, a help text (``metadata['help']``) and its range:
    ``ge``/``gt``/``le``/``lt`` bounds, ``finite`` (default True for numbers: nan and ±inf are
    refused) and ``choices``. The field's type hint gives the kind (int, float, bool, str,
    Literal, Optional); :func:`validate_config` checks both. A subclass re-declaring a field
    without a range inherits the range of the base class's declaration."""
    rng = dict(ge=ge, gt=gt, le=le, lt=lt, finite=finite, choices=choices)
    meta = {"help": help, **{k: v for k, v in rng.items() if v is not None}, **kw}
    if isinstance(default, list | dict | set):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def check_seed(value: Any, name: str = "seed") -> int:
    """The one rule for seeds: an integer in [0, 2^63 − 1]; else :class:`ConfigError`."""
    return check_value(name, value, int, ge=0, le=SEED_MAX)


def _num(v: float) -> str:
    if v == SEED_MAX:
        return "2^63 - 1"
    if isinstance(v, int) and abs(v) >= 10**6:
        return f"{v:.0e}".replace("e+0", "e").replace("e+", "e")
    return f"{v:g}" if isinstance(v, float) else str(v)


def check_seeds(values: Any, name: str = "seeds") -> list[int]:
    """A list of seeds: each by :func:`check_seed`, at most :data:`SEEDS_MAX_COUNT`, at least
    one; else :class:`ConfigError` naming ``name``."""
    if not isinstance(values, list | tuple) or not values:
        raise ConfigError(f"{name} must list at least one seed, got {values!r}")
    if len(values) > SEEDS_MAX_COUNT:
        raise ConfigError(
            f"{name} lists {len(values)} seeds; at most {SEEDS_MAX_COUNT} are allowed"
        )
    return [check_seed(v, f"{name}[{i}]") for i, v in enumerate(values)]


def _show(v: Any) -> str:
    """``repr`` of a value, huge integers shortened (a 301-digit int prints as 1.000e+300)."""
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10**18:
        return f"{float(v):.3e}" if abs(v) < 10**308 else f"an integer of {len(str(abs(v)))} digits"
    return repr(v)


def describe_range(
    kind: type,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    finite: bool | None = None,
    choices: Any = None,
    optional: bool = False,
) -> str:
    """Words for a range, e.g. "a finite number > 0", "an integer in [0, 10000]"."""
    if choices is not None:
        text = f"one of {list(choices)}"
    elif kind is bool:
        text = "a boolean"
    elif kind is str:
        text = "a string"
    else:
        noun = "an integer" if kind is int else "a number"
        if kind is float and finite is not False:
            noun = "a finite number"
        lo = ("[", ge) if ge is not None else ("(", gt) if gt is not None else None
        hi = ("]", le) if le is not None else (")", lt) if lt is not None else None
        if lo and hi:
            text = f"{noun} in {lo[0]}{_num(lo[1])}, {_num(hi[1])}{hi[0]}"
        elif lo:
            text = f"{noun} {'>=' if lo[0] == '[' else '>'} {_num(lo[1])}"
        elif hi:
            text = f"{noun} {'<=' if hi[0] == ']' else '<'} {_num(hi[1])}"
        else:
            text = noun
    return text + (" or None" if optional else "")


def check_value(
    name: str,
    value: Any,
    kind: type,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    finite: bool | None = None,
    choices: Any = None,
    optional: bool = False,
) -> Any:
    """``value`` checked against its kind and range: returned (an integral float as an int for
    ``kind=int``), or :class:`ConfigError` "NAME must be RANGE, got VALUE"."""
    rng = dict(ge=ge, gt=gt, le=le, lt=lt, finite=finite, choices=choices)

    def bad() -> ConfigError:
        return ConfigError(
            f"{name} must be {describe_range(kind, optional=optional, **rng)}, got {_show(value)}"
        )

    if value is None:
        if optional:
            return None
        raise bad()
    if choices is not None:
        if value not in choices:
            raise bad()
        return value
    if kind is bool or kind is str:
        if not isinstance(value, kind):
            raise bad()
        return value
    if kind not in (int, float):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad()
    if kind is int:
        if isinstance(value, float):
            if not (math.isfinite(value) and value.is_integer()):
                raise bad()
            value = int(value)
    elif finite is not False and not math.isfinite(value):
        raise bad()
    if math.isnan(value):
        return value  # finite=False allows nan; bounds do not apply to it
    if (
        (ge is not None and value < ge)
        or (gt is not None and value <= gt)
        or (le is not None and value > le)
        or (lt is not None and value >= lt)
    ):
        raise bad()
    return value


@functools.cache
def _field_specs(cls: type) -> dict[str, dict[str, Any]]:
    """Per field of config class ``cls``: kind, optional, and the range of the nearest
    declaration (in MRO order) that gives one."""
    hints = typing.get_type_hints(cls)
    out: dict[str, dict[str, Any]] = {}
    for f in fields(cls):
        t, optional = hints[f.name], False
        if get_origin(t) in (typing.Union, types.UnionType):
            args = [a for a in get_args(t) if a is not type(None)]
            optional = len(args) < len(get_args(t))
            t = args[0] if len(args) == 1 else Any
        spec: dict[str, Any] = {"kind": t, "optional": optional}
        if get_origin(t) is Literal:
            spec["kind"], spec["choices"] = str, get_args(t)
        for klass in cls.__mro__:
            decl = getattr(klass, "__dataclass_fields__", {}).get(f.name)
            if decl is not None and any(k in decl.metadata for k in _RANGE_KEYS):
                spec.update({k: decl.metadata[k] for k in _RANGE_KEYS if k in decl.metadata})
                break
        out[f.name] = spec
    return out


def validate_config(cfg: Any) -> Any:
    """Check every field of dataclass ``cfg`` against the kind and range its :func:`opt`
    declares; normalise integral floats of int fields to ints. Returns ``cfg``; the first bad
    field raises :class:`ConfigError` naming the option, the value and the allowed range."""
    for name, spec in _field_specs(type(cfg)).items():
        if spec["kind"] not in (int, float, bool, str):
            continue
        value = getattr(cfg, name)
        checked = check_value(name, value, **spec)
        if checked is not value and spec["kind"] is int:
            object.__setattr__(cfg, name, checked)
    return cfg


def config_ranges(cls: type) -> dict[str, str]:
    """Per field of config class ``cls``, its declared range in words ("a finite number in
    (0, 10]"), as :func:`validate_config` states it in its errors ("" for free-form fields)."""
    out = {}
    for name, spec in _field_specs(cls).items():
        rng = {k: v for k, v in spec.items() if k not in ("kind", "optional")}
        known = spec["kind"] in (int, float, bool, str)
        out[name] = describe_range(spec["kind"], optional=spec["optional"], **rng) if known else ""
    return out


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
        if t is int and isinstance(value, str):  # "1e3", "1.0e+300": the range check judges it
            try:
                return int(value)
            except ValueError:
                f = _float_or_none(value)
                if f is not None and math.isfinite(f) and f.is_integer():
                    return int(f)
        if isinstance(value, bool) and t is not str:
            raise ConfigError(f"option {name!r}: expected {t.__name__}, got a boolean")
        try:
            return t(value)
        except (TypeError, ValueError):
            raise ConfigError(f"option {name!r}: expected {t.__name__}, got {value!r}") from None
    return value


def _float_or_none(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


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
