"""Scenario YAML with line numbers: composing, ``extends`` chains and ``sizes`` overlays.

The YAML is *composed* (not just loaded) so that every key and list item keeps its source line;
``extends: base.yaml`` (relative to the file) deep-merges a file over another one, and
``sizes: {quick: {...}, full: {...}}`` holds overlays picked with ``size=`` (mappings merge key
by key; lists and scalars replace). Each merged value keeps the (file, line) it came from.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from obliviate.scenarios.specs import Loc, ScenarioError


def compose_yaml(text: str, origin: str) -> tuple[Any, dict[Loc, int]]:
    """Parse YAML into plain data plus ``{location: line}`` (1-based) for every key and item.

    Duplicate keys and YAML merge keys (``<<``) are refused (use ``extends``).
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        raise ScenarioError(f"{origin}: not valid YAML: {e}") from None
    if root is None:
        raise ScenarioError(f"{origin}: the file is empty")
    lines: dict[Loc, int] = {}
    cons = yaml.constructor.SafeConstructor()

    def conv(node: yaml.Node, loc: Loc) -> Any:
        lines.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, MappingNode):
            out: dict[Any, Any] = {}
            for kn, vn in node.value:
                if not isinstance(kn, ScalarNode):
                    raise ScenarioError(f"{origin}:{kn.start_mark.line + 1}: keys must be scalars")
                if kn.tag == "tag:yaml.org,2002:merge":
                    raise ScenarioError(
                        f"{origin}:{kn.start_mark.line + 1}: YAML merge keys (<<) are not "
                        "supported; use `extends: other.yaml`"
                    )
                try:
                    key = cons.construct_object(kn, deep=True)
                except yaml.YAMLError as e:
                    raise ScenarioError(f"{origin}:{kn.start_mark.line + 1}: {e}") from None
                if key in out:
                    raise ScenarioError(
                        f"{origin}:{kn.start_mark.line + 1}: {_dotted(loc + (key,))}: duplicate key"
                    )
                lines[loc + (key,)] = kn.start_mark.line + 1
                out[key] = conv(vn, loc + (key,))
            return out
        if isinstance(node, SequenceNode):
            return [conv(v, loc + (i,)) for i, v in enumerate(node.value)]
        try:
            return cons.construct_object(node, deep=True)
        except yaml.YAMLError as e:
            raise ScenarioError(f"{origin}:{node.start_mark.line + 1}: {e}") from None

    return conv(root, ()), lines


def _dotted(loc: Loc) -> str:
    s = ""
    for p in loc:
        s += f"[{p}]" if isinstance(p, int) else (f".{p}" if s else str(p))
    return s or "(top level)"


def _merge(
    base: Any, over: Any, base_lines: dict[Loc, Any], over_lines: dict[Loc, Any], loc: Loc = ()
) -> tuple[Any, dict[Loc, Any]]:
    """Deep-merge ``over`` onto ``base`` (mappings key by key; anything else replaces) and keep
    each value's line (and file) from the side it came from."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        lines = dict(base_lines)
        for k, v in over.items():
            sub = loc + (k,)
            if k in base:
                merged, sub_lines = _merge(
                    base[k],
                    v,
                    {lk: ln for lk, ln in lines.items() if lk[: len(sub)] == sub},
                    {lk: ln for lk, ln in over_lines.items() if lk[: len(sub)] == sub},
                    sub,
                )
                lines = {lk: ln for lk, ln in lines.items() if lk[: len(sub)] != sub}
                lines.update(sub_lines)
                out[k] = merged
            else:
                out[k] = copy.deepcopy(v)
                lines.update({lk: ln for lk, ln in over_lines.items() if lk[: len(sub)] == sub})
        return out, lines
    return copy.deepcopy(over), {lk: ln for lk, ln in over_lines.items() if lk[: len(loc)] == loc}


@dataclasses.dataclass
class _Source:
    """Data + per-location (file, line) of a scenario file after ``extends`` and ``sizes``."""

    data: dict[str, Any]
    where: dict[Loc, tuple[str, int]]


def _read(path: Path, seen: tuple[Path, ...] = ()) -> _Source:
    """Compose ``path`` and deep-merge it over its ``extends`` chain (``sizes`` merge too)."""
    path = path.resolve()
    if path in seen:
        chain = " → ".join(str(p) for p in (*seen, path))
        raise ScenarioError(f"{path}: `extends` forms a cycle: {chain}")
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ScenarioError(f"scenario file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError(f"scenario file {path} cannot be read: {e}") from None
    data, lines = compose_yaml(text, str(path))
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}:1: a scenario must be a mapping of keys, got {_kind(data)}")
    where = {loc: (str(path), ln) for loc, ln in lines.items()}
    ext = data.pop("extends", None)
    if ext is None:
        return _Source(data, where)
    if not isinstance(ext, str):
        raise ScenarioError(f"{path}:{lines[('extends',)]}: extends: expected a file path")
    parent = _read(path.parent / ext, seen=(*seen, path))
    merged, merged_where = _merge(parent.data, data, parent.where, where)
    return _Source(merged, merged_where)


def _apply_size(src: _Source, size: str | None, origin: str) -> _Source:
    sizes = src.data.pop("sizes", None)
    if sizes is None:
        if size is not None:
            raise ScenarioError(f"{origin}: size {size!r} asked for, but the file has no `sizes`")
        return src
    if not isinstance(sizes, dict) or not all(isinstance(v, dict) for v in sizes.values()):
        ln = src.where.get(("sizes",), (origin, 0))[1]
        raise ScenarioError(f"{origin}:{ln}: sizes: expected {{size name: {{overlay}}}}")
    if size is None:
        return src
    if size not in sizes:
        raise ScenarioError(f"{origin}: unknown size {size!r}; the file defines {sorted(sizes)}")
    prefix: Loc = ("sizes", size)
    over_where = {loc[2:]: w for loc, w in src.where.items() if loc[:2] == prefix and len(loc) > 2}
    base_where = {loc: w for loc, w in src.where.items() if loc[:1] != ("sizes",)}
    data, where = _merge(src.data, sizes[size], base_where, over_where)
    return _Source(data, where)


def _kind(v: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string"}.get(type(v), type(v).__name__)


__all__ = ["compose_yaml"]
