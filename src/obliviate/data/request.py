"""Forget requests: the sample ids a data owner asks to remove."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from obliviate._io import atomic_write_json, hash_parts, read_json
from obliviate.data.dataset import _fmt_ids
from obliviate.data.split import Split
from obliviate.errors import RequestError

#: Largest sample id a request may name (int64, the dtype of every id tensor).
MAX_ID = 2**63 - 1


@dataclass(frozen=True)
class ForgetRequest:
    """An ordered, duplicate-free tuple of training-sample ids to unlearn.

    Construct freely; call :meth:`validate` against the split before use (every library entry
    point does). ``meta`` records provenance (e.g. the attack strategy and its score).
    """

    ids: tuple[int, ...]
    name: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def __init__(
        self, ids: Sequence[int] | torch.Tensor, name: str = "", meta: dict[str, Any] | None = None
    ):
        if isinstance(ids, torch.Tensor | np.ndarray):
            ids = ids.reshape(-1).tolist()
        try:
            items = list(ids)
        except TypeError:
            raise RequestError(f"request ids must be a sequence of integers, got {ids!r}") from None
        bad = [i for i in items if isinstance(i, bool) or not isinstance(i, int | np.integer)]
        if bad:
            shown = ", ".join(f"{b!r:.40}" for b in bad[:5])
            raise RequestError(f"request ids must be integers; not integers: [{shown}]")
        huge = [str(int(i)) for i in items if not -MAX_ID - 1 <= int(i) <= MAX_ID]
        if huge:
            shown = ", ".join(
                h if len(h) <= 24 else f"{h[:12]}…({len(h)} digits)" for h in huge[:5]
            )
            raise RequestError(f"request ids must fit in int64; out of range: [{shown}]")
        as_ints = tuple(int(i) for i in items)
        object.__setattr__(self, "ids", as_ints)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "meta", dict(meta or {}))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def tensor(self) -> torch.Tensor:
        return torch.as_tensor(self.ids, dtype=torch.int64)

    @property
    def hash(self) -> str:
        return hash_parts(torch.sort(self.tensor).values.numpy().tobytes())

    def validate(self, split: Split) -> ForgetRequest:
        """Raise :class:`RequestError` naming the ids unless every id is a distinct training id."""
        if not self.ids:
            raise RequestError("empty forget request: it names no sample ids")
        dups = sorted(i for i, c in Counter(self.ids).items() if c > 1)
        if dups:
            raise RequestError(f"forget request has duplicate ids: {_fmt_ids(dups)}")
        parts = split.part_of(self.ids)
        bad: dict[str, list[int]] = {}
        for i, p in zip(self.ids, parts, strict=True):
            if p != "train":
                bad.setdefault(p or "unknown", []).append(i)
        if bad:
            msgs = []
            if "reserve" in bad:
                msgs.append(
                    f"ids in the reserve (spare pool, never trained on): {_fmt_ids(bad['reserve'])}"
                )
            for p in ("test", "val"):
                if p in bad:
                    msgs.append(f"ids in the {p} split, not in training: {_fmt_ids(bad[p])}")
            if "unknown" in bad:
                msgs.append(f"ids not in the split at all: {_fmt_ids(bad['unknown'])}")
            raise RequestError(
                "forget request names ids outside the training split; " + "; ".join(msgs)
            )
        return self

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        return {"ids": list(self.ids), "name": self.name, "meta": self.meta}

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ForgetRequest:
        """Read ``{"ids": [...]}`` (or a bare JSON list of ids) from ``path``."""
        path = Path(path)
        d = read_json(path, f"request file {path}", RequestError)
        if isinstance(d, list):
            d = {"ids": d}
        if not isinstance(d, dict) or "ids" not in d or not isinstance(d["ids"], list):
            raise RequestError(
                f'request file {path}: expected {{"ids": [...]}} or a JSON list of ids'
            )
        meta = d.get("meta") or {}
        if not isinstance(meta, dict):
            raise RequestError(f"request file {path}: 'meta' must be an object")
        try:
            return cls(d["ids"], name=str(d.get("name", "")), meta=meta)
        except RequestError as e:
            raise RequestError(f"request file {path}: {e}") from None
