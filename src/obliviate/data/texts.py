"""Plain texts for language models (verbatim memorisation, MUSE): :class:`TextItem`,
:class:`TextDataset` and the JSONL format for users' own texts.

JSONL format (one JSON object per line; blank lines are skipped)::

    {"id": "poem-001", "text": "Shall I compare thee to a summer's day? ...", "group": "sonnets"}

``id`` (non-empty string, unique in the file) and ``text`` (non-empty string) are required;
``group`` (optional, default: the id) names the unit a request can forget as a whole (a
category, a book). A malformed line raises :class:`~obliviate.errors.DataFormatError` naming the
file and line. Verbatim memorisation (:func:`obliviate.metrics.text.verbatim_memorisation`)
splits each text's tokens in half itself, so a text is stored whole.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from obliviate.data.records import GroupedRecords, read_jsonl_records, write_jsonl_records
from obliviate.errors import DataFormatError, RequestError

_FIELDS = ("id", "text", "group")


@dataclass(frozen=True)
class TextItem:
    """One text with a stable id and the group (category) it belongs to."""

    id: str
    text: str
    group: str = ""

    def to_json(self) -> dict[str, Any]:
        d = {"id": self.id, "text": self.text, "group": self.group}
        return {k: v for k, v in d.items() if v}


@dataclass(frozen=True)
class TextDataset(GroupedRecords[TextItem]):
    """An ordered tuple of :class:`TextItem` with unique ids (a :class:`DataFormatError` names
    duplicates)."""

    name: str
    items: tuple[TextItem, ...]
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    record_kind: ClassVar[str] = "text"

    def __post_init__(self) -> None:
        self._check_unique_ids()

    def records(self) -> tuple[TextItem, ...]:
        return self.items

    @property
    def texts(self) -> tuple[str, ...]:
        return tuple(t.text for t in self.items)

    def of_group(self, group: str) -> tuple[TextItem, ...]:
        """The items of ``group``; raises :class:`RequestError` for an unknown group."""
        if group not in set(self.groups):
            raise RequestError(
                f"dataset {self.name!r} has no group {group!r}; groups: {list(self.groups)}"
            )
        return tuple(t for t in self.items if t.group == group)

    def request(
        self, ids: Sequence[str] | None = None, groups: Sequence[str] | None = None
    ) -> tuple[str, ...]:
        """Resolve a forget request naming text ``ids`` and/or whole ``groups`` into the ordered,
        duplicate-free ids it removes; raises :class:`RequestError` when it is empty or names
        unknown ids or groups."""
        ids, groups = list(ids or []), list(groups or [])
        if not ids and not groups:
            raise RequestError(f"empty forget request for {self.name!r}: it names no ids or groups")
        unknown_ids = sorted(set(ids) - set(self.ids))
        unknown_groups = sorted(set(groups) - set(self.groups))
        if unknown_ids or unknown_groups:
            raise RequestError(
                f"invalid forget request for {self.name!r}: unknown ids {unknown_ids[:10]}, "
                f"unknown groups {unknown_groups[:10]}"
            )
        want = set(ids) | {t.id for t in self.items if t.group in set(groups)}
        return tuple(t.id for t in self.items if t.id in want)


def item_from_json(obj: Any, where: str) -> TextItem:
    """Build a :class:`TextItem` from one parsed JSON object; ``where`` names it in errors."""
    if not isinstance(obj, dict):
        raise DataFormatError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(_FIELDS))
    if unknown:
        raise DataFormatError(f"{where}: unknown fields {unknown}; allowed: {_FIELDS}")
    for key in ("id", "text"):
        v = obj.get(key)
        if not isinstance(v, str) or not v.strip():
            raise DataFormatError(f"{where}: field {key!r} must be a non-empty string, got {v!r}")
    group = obj.get("group", "")
    if not isinstance(group, str):
        raise DataFormatError(f"{where}: field 'group' must be a string, got {group!r}")
    return TextItem(obj["id"], obj["text"], group or obj["id"])


def read_text_jsonl(path: str | os.PathLike[str], name: str | None = None) -> TextDataset:
    """Read users' texts from a JSONL file (format in the module docstring). Errors name the
    file and the 1-based line."""
    path = Path(path)
    items = read_jsonl_records(path, item_from_json, "text", "texts")
    return TextDataset(name or path.stem, tuple(items), meta={"source": str(path)})


def write_text_jsonl(items: Iterable[TextItem], path: str | os.PathLike[str]) -> Path:
    """Write ``items`` as JSONL (atomically); :func:`read_text_jsonl` reads it back unchanged."""
    return write_jsonl_records(items, path)
