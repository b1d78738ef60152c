"""Scenario YAML with line numbers: composing, ``extends`` chains and ``sizes`` overlays.

The YAML is *composed* (not just loaded) so that every key and list item keeps its source line;
``extends: base.yaml`` (relative to the file) deep-merges a file over another one, and
``sizes: {quick: {...}, full: {...}}`` holds overlays picked with ``size=`` (mappings merge key
by key; lists and scalars replace). Each merged value keeps the (file, line) it came from.

The YAML is read with limits, so a hostile or mistaken file is refused at once instead of hanging
or exhausting memory: at most :data:`MAX_BYTES` per file, :data:`MAX_DEPTH` levels of nesting,
:data:`MAX_ALIASES` aliases, :data:`MAX_NODES` values after aliases are expanded (a "billion
laughs" bomb), :data:`MAX_LIST` items per list, and integers within int64, floats finite.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from obliviate.scenarios.specs import Loc, ScenarioError

#: Limits of a scenario file (see the module docstring).
MAX_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_ALIASES = 100
MAX_NODES = 100_000
MAX_LIST = 10_000
_INT64 = 2**63


class _LimitedLoader(yaml.SafeLoader):
    """A ``SafeLoader`` that refuses deep nesting and many aliases while composing."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise _LimitError(f"line {mark.line + 1}: more than {MAX_ALIASES} aliases")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _LimitError(f"line {mark.line + 1}: nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _LimitError(Exception):
    """A limit of :class:`_LimitedLoader` was exceeded (turned into a ScenarioError)."""


def _compose(text: str, origin: str) -> yaml.Node | None:
    if len(text) > MAX_BYTES:
        raise ScenarioError(f"{origin}: the file is larger than {MAX_BYTES >> 20} MiB; refused")
    loader = _LimitedLoader(text)
    try:
        return loader.get_single_node()
    except _LimitError as e:
        raise ScenarioError(f"{origin}: {e}; refused") from None
    except RecursionError:
        raise ScenarioError(f"{origin}: nested too deeply; refused") from None
    finally:
        loader.dispose()


def compose_yaml(text: str, origin: str) -> tuple[Any, dict[Loc, int]]:
    """Parse YAML into plain data plus ``{location: line}`` (1-based) for every key and item.

    Duplicate keys and YAML merge keys (``<<``) are refused (use ``extends``).
    """
    try:
        root = _compose(text, origin)
    except yaml.YAMLError as e:
        one_line = " ".join(str(e).split())  # the parser's message spans lines
        raise ScenarioError(f"{origin}: not valid YAML: {one_line}") from None
    if root is None:
        raise ScenarioError(f"{origin}: the file is empty")
    lines: dict[Loc, int] = {}
    cons = yaml.constructor.SafeConstructor()
    count = [0]

    def conv(node: yaml.Node, loc: Loc) -> Any:
        count[0] += 1
        if count[0] > MAX_NODES:
            raise ScenarioError(
                f"{origin}: more than {MAX_NODES} values once aliases are expanded; refused"
            )
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
            if len(node.value) > MAX_LIST:
                raise ScenarioError(
                    f"{origin}:{node.start_mark.line + 1}: {_dotted(loc)}: a list of "
                    f"{len(node.value)} items (at most {MAX_LIST}); refused"
                )
            return [conv(v, loc + (i,)) for i, v in enumerate(node.value)]
        try:
            value = cons.construct_object(node, deep=True)
        except yaml.YAMLError as e:
            raise ScenarioError(f"{origin}:{node.start_mark.line + 1}: {e}") from None
        _check_number(value, node, loc, origin)
        return value

    return conv(root, ()), lines


def _check_number(value: Any, node: yaml.Node, loc: Loc, origin: str) -> None:
    """Refuse integers beyond int64 and floats that overflow to infinity (``1e999``)."""
    bad = (
        isinstance(value, int)
        and not isinstance(value, bool)
        and not -_INT64 <= value < _INT64
        or isinstance(value, float)
        and value in (float("inf"), float("-inf"))
    )
    if bad:
        raise ScenarioError(
            f"{origin}:{node.start_mark.line + 1}: {_dotted(loc)}: number {node.value[:24]!r} is "
            "out of range (integers must fit in int64, floats must be finite); refused"
        )


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
        if path.stat().st_size > MAX_BYTES:
            raise ScenarioError(
                f"scenario file {path} is larger than {MAX_BYTES >> 20} MiB; refused"
            )
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
