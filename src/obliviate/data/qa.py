"""Question–answer data for language models: :class:`QAPair`, :class:`QADataset`, and the JSONL
format for users' own pairs.

JSONL format (one JSON object per line; blank lines are skipped)::

    {"id": "acme-001", "question": "Where was Ada born?", "answer": "Ada was born in Ulm.",
     "paraphrased_answer": "Ulm is Ada's birthplace.",            # optional
     "perturbed_answers": ["Ada was born in Bonn.", "..."],       # optional, list of strings
     "group": "Ada", "key_fact": "Ulm"}                           # optional

``id`` (non-empty string, unique in the file), ``question`` and ``answer`` (non-empty strings)
are required. ``group`` names the unit a request can forget as a whole (a person, a topic);
``key_fact`` is the short span that answer accuracy looks for (default: the whole answer).
A malformed line raises :class:`~obliviate.errors.DataFormatError` naming the file and line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from obliviate.data.records import GroupedRecords, read_jsonl_records, write_jsonl_records
from obliviate.errors import DataFormatError, RequestError

_REQUIRED = ("id", "question", "answer")
_OPTIONAL = ("paraphrased_answer", "perturbed_answers", "group", "key_fact", "alt_questions")


@dataclass(frozen=True)
class QAPair:
    """One question with its answer. ``paraphrased_answer`` and ``perturbed_answers`` (plausible
    but wrong) feed TOFU's truth ratio; ``alt_questions`` are other phrasings of the question."""

    id: str
    question: str
    answer: str
    paraphrased_answer: str | None = None
    perturbed_answers: tuple[str, ...] = ()
    group: str = ""
    key_fact: str = ""
    alt_questions: tuple[str, ...] = ()

    @property
    def fact(self) -> str:
        """The span answer accuracy looks for: ``key_fact`` or, when empty, the whole answer."""
        return self.key_fact or self.answer

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["perturbed_answers"] = list(self.perturbed_answers)
        d["alt_questions"] = list(self.alt_questions)
        return {k: v for k, v in d.items() if v not in (None, "", [])}


@dataclass(frozen=True)
class QADataset(GroupedRecords[QAPair]):
    """An ordered tuple of :class:`QAPair` with unique ids, and named parts (lists of groups).

    ``parts`` maps a part name (``"trained"``, ``"holdout"``, ``"reserve"``) to the groups in it;
    a dataset without parts (users' JSONL) treats every group as trained.
    """

    name: str
    pairs: tuple[QAPair, ...]
    parts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    record_kind: ClassVar[str] = "QA"

    def __post_init__(self) -> None:
        self._check_unique_ids()

    def records(self) -> tuple[QAPair, ...]:
        return self.pairs

    def part_of_group(self, group: str) -> str | None:
        """The part holding ``group`` (``"trained"`` when the dataset has no parts), or None."""
        if not self.parts:
            return "trained" if group in set(self.groups) else None
        for part, groups in self.parts.items():
            if group in groups:
                return part
        return None

    def pairs_of(self, part: str) -> tuple[QAPair, ...]:
        """The pairs whose group lies in ``part``; raises :class:`RequestError` for an unknown
        part name."""
        if not self.parts:
            if part == "trained":
                return self.pairs
            raise RequestError(f"dataset {self.name!r} has no part {part!r} (only 'trained')")
        if part not in self.parts:
            raise RequestError(
                f"dataset {self.name!r} has no part {part!r}; parts: {sorted(self.parts)}"
            )
        groups = set(self.parts[part])
        return tuple(p for p in self.pairs if p.group in groups)

    def index_of(self, ids: Iterable[str]) -> list[int]:
        """Positions of ``ids`` in :attr:`pairs` (integer sample ids for index-based code)."""
        pos = {pid: i for i, pid in enumerate(self.ids)}
        ids = list(ids)
        unknown = [i for i in ids if i not in pos]
        if unknown:
            raise RequestError(f"unknown QA ids in dataset {self.name!r}: {unknown[:10]}")
        return [pos[i] for i in ids]

    def request(
        self, ids: Sequence[str] | None = None, groups: Sequence[str] | None = None
    ) -> tuple[str, ...]:
        """Resolve a forget request naming QA ``ids`` and/or whole ``groups`` (people) into the
        ordered, duplicate-free tuple of ids it removes. Raises :class:`RequestError` naming the
        offenders when it is empty, names unknown ids or groups, or names anything outside the
        trained part (holdout and reserve people are never trained on)."""
        ids = list(ids or [])
        groups = list(groups or [])
        if not ids and not groups:
            raise RequestError(f"empty forget request for {self.name!r}: it names no ids or people")
        by_id = {p.id: p for p in self.pairs}
        unknown_ids = [i for i in ids if i not in by_id]
        unknown_groups = [g for g in groups if self.part_of_group(g) is None]
        msgs = []
        if unknown_ids:
            msgs.append(f"unknown QA ids: {unknown_ids[:10]}")
        if unknown_groups:
            msgs.append(f"unknown people/groups: {unknown_groups[:10]}")
        outside: dict[str, list[str]] = {}
        for g in groups:
            part = self.part_of_group(g)
            if part not in (None, "trained"):
                outside.setdefault(part, []).append(g)
        for i in ids:
            if i in by_id:
                part = self.part_of_group(by_id[i].group)
                if part != "trained":
                    outside.setdefault(part or "unknown", []).append(i)
        for part, names in sorted(outside.items()):
            msgs.append(f"{part} (never trained on, cannot be forgotten): {names[:10]}")
        if msgs:
            raise RequestError(f"invalid forget request for {self.name!r}: " + "; ".join(msgs))
        want = set(ids) | {p.id for p in self.pairs if p.group in set(groups)}
        return tuple(p.id for p in self.pairs if p.id in want)


def _check_str(obj: dict[str, Any], key: str, where: str, required: bool) -> str | None:
    v = obj.get(key)
    if v is None and not required:
        return None
    if not isinstance(v, str) or (required and not v.strip()):
        raise DataFormatError(f"{where}: field {key!r} must be a non-empty string, got {v!r}")
    return v


def _str_list(obj: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    v = obj.get(key, [])
    if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
        raise DataFormatError(f"{where}: field {key!r} must be a list of non-empty strings")
    return tuple(v)


def pair_from_json(obj: Any, where: str) -> QAPair:
    """Build a :class:`QAPair` from one parsed JSON object; ``where`` (e.g. ``file:line``) names
    it in the :class:`DataFormatError` raised for a missing or mistyped field."""
    if not isinstance(obj, dict):
        raise DataFormatError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise DataFormatError(
            f"{where}: unknown fields {unknown}; allowed: {_REQUIRED + _OPTIONAL}"
        )
    req = {k: _check_str(obj, k, where, True) for k in _REQUIRED}
    return QAPair(
        id=str(req["id"]),
        question=str(req["question"]),
        answer=str(req["answer"]),
        paraphrased_answer=_check_str(obj, "paraphrased_answer", where, False),
        perturbed_answers=_str_list(obj, "perturbed_answers", where),
        group=_check_str(obj, "group", where, False) or "",
        key_fact=_check_str(obj, "key_fact", where, False) or "",
        alt_questions=_str_list(obj, "alt_questions", where),
    )


def read_qa_jsonl(path: str | os.PathLike[str], name: str | None = None) -> QADataset:
    """Read users' QA pairs from a JSONL file (format in the module docstring). A pair without a
    ``group`` forms its own group (its id). Errors name the file and the 1-based line."""
    path = Path(path)
    pairs = [
        p if p.group else QAPair(**{**_fields(p), "group": p.id})
        for p in read_jsonl_records(path, pair_from_json, "QA", "QA pairs")
    ]
    return QADataset(name or path.stem, tuple(pairs), meta={"source": str(path)})


def _fields(pair: QAPair) -> dict[str, Any]:
    return {k: getattr(pair, k) for k in QAPair.__dataclass_fields__}


def write_qa_jsonl(pairs: Iterable[QAPair], path: str | os.PathLike[str]) -> Path:
    """Write ``pairs`` as JSONL (atomically); :func:`read_qa_jsonl` reads it back unchanged."""
    return write_jsonl_records(pairs, path)
