"""What the language-model data sets share: an ordered tuple of records (QA pairs, texts), each
with a unique string ``id`` and a ``group`` (a person, a topic, a category)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import ClassVar, Generic, Protocol, TypeVar

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


__all__ = ["GroupedRecords"]
