"""What the language-model data sets share: an ordered tuple of records (QA pairs, texts), each
with a unique string ``id`` and a ``group`` (a person, a topic, a category)."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from obliviate._io import atomic_write_bytes
from obliviate.errors import DataFormatError, RequestError


class _Record(Protocol):
    id: str
    group: str


R = TypeVar("R", bound=_Record)


class GroupedRecords(Generic[R]):
    """Mixin for a frozen dataclass with a ``name`` and a tuple of records (:meth:`records`):
    unique ids (a :class:`DataFormatError` names duplicates), ``len``, ``ids``, ``groups`` and
    :meth:`select`, whose :class:`RequestError` names unknown ids."""

    #: How messages name a record ("QA", "text").
    record_kind: ClassVar[str] = "record"
    name: str

    def records(self) -> tuple[R, ...]:  # pragma: no cover - overridden
        raise NotImplementedError

    def _check_unique_ids(self) -> None:
        dups = sorted(i for i, c in Counter(r.id for r in self.records()).items() if c > 1)
        if dups:
            raise DataFormatError(
                f"dataset {self.name!r} has duplicate {self.record_kind} ids: {dups[:10]}"
            )

    def __len__(self) -> int:
        return len(self.records())

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(r.id for r in self.records())

    @property
    def groups(self) -> tuple[str, ...]:
        """Every group, in order of first appearance."""
        return tuple(dict.fromkeys(r.group for r in self.records()))

    def select(self, ids: Iterable[str]) -> tuple[R, ...]:
        """The records with these ids, in dataset order; raises :class:`RequestError` naming
        unknown ids."""
        want = set(ids)
        unknown = sorted(want - set(self.ids))
        if unknown:
            raise RequestError(
                f"unknown {self.record_kind} ids in dataset {self.name!r}: {unknown[:10]}"
            )
        return tuple(r for r in self.records() if r.id in want)


def read_jsonl_records(
    path: str | os.PathLike[str], parse: Callable[[Any, str], R], what: str, plural: str
) -> list[R]:
    """The records of a JSONL file, one JSON object a line (blank lines skipped), each built by
    ``parse(obj, "file:line")``. Raises :class:`DataFormatError` naming the file and the 1-based
    line for unreadable files, invalid JSON, a duplicate id, or a file with no record."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataFormatError(f"{what} file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataFormatError(f"{what} file {path} cannot be read ({e})") from None
    out: list[R] = []
    first_line: dict[str, int] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataFormatError(f"{where}: not valid JSON ({e.msg})") from None
        rec = parse(obj, where)
        if rec.id in first_line:
            raise DataFormatError(
                f"{where}: duplicate id {rec.id!r} (first on line {first_line[rec.id]})"
            )
        first_line[rec.id] = n
        out.append(rec)
    if not out:
        raise DataFormatError(f"{what} file {path} holds no {plural}")
    return out


def write_jsonl_records(records: Iterable[Any], path: str | os.PathLike[str]) -> Path:
    """Write each record's ``to_json()`` as one JSONL line, atomically."""
    lines = [json.dumps(r.to_json(), ensure_ascii=False) for r in records]
    path = Path(path)
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))
    return path


__all__ = ["GroupedRecords", "read_jsonl_records", "write_jsonl_records"]
