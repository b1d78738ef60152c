"""``--set key=value`` overlays of a validated scenario (``obliviate run`` / ``obliviate bench``).

A key is a dotted path into the scenario as its YAML spells it: ``training.lr=0.01``,
``defenses.healing.options.lr=3e-4``, ``seeds=[0,1]``. A path segment into a list is an index
(``methods.0.config.max_steps=40``) or, for a list of mappings, the item whose ``label`` or
``name`` equals it (``methods.fisher.config.lambda_sigma2=1e-10``). Values are YAML
(``true``, ``[twins, none]``, ``null``), with numbers such as ``3e-4`` read as floats. The
overlaid scenario is validated again, so a bad key or value is refused naming the ``--set``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import yaml

from obliviate.errors import ConfigError
from obliviate.scenarios.schema import Scenario

#: Mappings of the scenario whose extra keys are options (a free-form leaf may be added there).
_SPEC_HINT = ("options", "config", "kwargs")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def parse_value(text: str) -> Any:
    """A ``--set`` value: YAML, except that a number YAML 1.1 reads as a string (``3e-4``) is
    a float."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        one_line = " ".join(str(e).split())  # the parser's message spans lines
        raise ConfigError(f"--set value {text!r} is not valid YAML: {one_line}") from None
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        return float(value)
    return value


def parse_sets(items: Iterable[str]) -> list[tuple[str, Any]]:
    """``["a.b=1", ...]`` → ``[("a.b", 1), ...]``; refuses an item without ``=`` or a key."""
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE (dotted key), got {item!r}")
        out.append((key.strip(), parse_value(value.strip())))
    return out


def _step(node: Any, part: str, key: str) -> Any:
    """The child ``part`` of ``node`` (a mapping key, a list index, or a list item's label)."""
    if isinstance(node, list):
        if part.lstrip("-").isdigit():
            i = int(part)
            if not -len(node) <= i < len(node):
                raise ConfigError(f"--set {key}: index {i} out of range (list of {len(node)})")
            return i
        hits = [
            i
            for i, v in enumerate(node)
            if isinstance(v, dict) and part in (v.get("label"), v.get("name"))
        ]
        if len(hits) != 1:
            what = "no item" if not hits else f"{len(hits)} items"
            raise ConfigError(f"--set {key}: {what} labelled or named {part!r} in the list")
        return hits[0]
    if isinstance(node, dict):
        return part
    raise ConfigError(f"--set {key}: cannot go into {part!r}: the value above it is {node!r}")


def set_path(data: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted ``key`` of ``data`` (plain scenario data) to ``value`` in place.

    Every segment but the last must exist; the last may be a new key only in a free-form
    mapping (``training``, ``config``, ``options``, ``kwargs``): a step's own fields all exist.
    """
    parts = key.split(".")
    node: Any = data
    for depth, part in enumerate(parts):
        idx = _step(node, part, key)
        last = depth == len(parts) - 1
        if isinstance(node, dict) and idx not in node:
            hint = next((h for h in _SPEC_HINT if isinstance(node.get(h), dict)), None)
            if not last or hint is not None:
                where = ".".join(parts[:depth]) or "the scenario"
                extra = f"; options go under {where}.{hint}.{part}" if hint else ""
                raise ConfigError(f"--set {key}: {where} has no key {part!r}{extra}")
        if last:
            node[idx] = value
        else:
            node = node[idx]
            if node is None:
                raise ConfigError(f"--set {key}: {'.'.join(parts[: depth + 1])} is not set")


def apply_sets(scenario: Scenario, sets: Iterable[tuple[str, Any]] | Iterable[str]) -> Scenario:
    """``scenario`` with each ``(key, value)`` (or ``"key=value"``) set, validated again."""
    pairs = [parse_sets([s])[0] if isinstance(s, str) else s for s in sets]
    if not pairs:
        return scenario
    data = scenario.model_dump(mode="json")
    for key, value in pairs:
        set_path(data, key, value)
    origin = f"{scenario.origin} with --set " + " ".join(f"{k}={v!r}" for k, v in pairs)
    return Scenario.from_dict(data, origin=origin, base_dir=scenario.base_dir)


__all__ = ["apply_sets", "parse_sets", "parse_value", "set_path"]
