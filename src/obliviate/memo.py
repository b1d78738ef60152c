"""Content-keyed memoisation for audits: bounded LRU caches keyed by fingerprints of the tensors
and weights a result depends on, so they are never stale (a changed weight or input is a new key).

An audit of many unlearned models against one gold model and one original (a scenario step, a
healing sweep) would otherwise recompute the two reference models' logits, features and SVC MIA
for every row; with these caches each is computed once per (model, data). Results are
bit-identical to a cold run (tests: ``tests/test_memo.py``).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

V = TypeVar("V")

_ALL: list[LRUCache[Any]] = []


def fingerprint(*items: Tensor | np.ndarray | str | float | int | None) -> str:
    """128-bit BLAKE2b digest of the dtypes, shapes and bytes of tensors/arrays (and the reprs of
    scalars): equal digests mean equal contents."""
    h = hashlib.blake2b(digest_size=16)
    for it in items:
        if isinstance(it, Tensor):
            a = it.detach().cpu().contiguous()
            if a.dtype == torch.bfloat16:
                a = a.float()
            arr = a.numpy()
        elif isinstance(it, np.ndarray):
            arr = np.ascontiguousarray(it)
        else:
            h.update(f"<{type(it).__name__}:{it!r}>".encode())
            continue
        h.update(f"{arr.dtype}{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def module_fingerprint(model: nn.Module) -> str:
    """Digest of a module's class structure (``repr``) and every parameter and buffer."""
    sd = model.state_dict()
    return fingerprint(repr(model), *sd, *sd.values())


def tensor_bytes(t: Tensor) -> int:
    """Memory held by a tensor's elements."""
    return t.element_size() * t.nelement()


class LRUCache(Generic[V]):
    """A least-recently-used map bounded by ``max_entries`` and, with ``sizeof``, by ``max_bytes``
    (a value larger than the whole budget is returned but not kept); hit/miss counters for tests
    and stats."""

    def __init__(
        self,
        name: str,
        max_entries: int,
        *,
        max_bytes: int | None = None,
        sizeof: Callable[[V], int] | None = None,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        if (max_bytes is None) != (sizeof is None):
            raise ValueError("max_bytes and sizeof go together")
        self.name = name
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._sizeof = sizeof
        self._d: OrderedDict[Any, V] = OrderedDict()
        self._bytes: dict[Any, int] = {}
        self._total = 0
        self.hits = 0
        self.misses = 0
        _ALL.append(self)

    @property
    def nbytes(self) -> int:
        """Bytes held (0 without ``sizeof``)."""
        return self._total

    def get(self, key: Any) -> V | None:
        """The value stored under ``key`` (now most recent), or ``None``."""
        if key in self._d:
            self._d.move_to_end(key)
            self.hits += 1
            return self._d[key]
        self.misses += 1
        return None

    def put(self, key: Any, value: V) -> V:
        """Store ``value``, evicting the least recently used entries beyond the bounds."""
        if self._sizeof is not None:
            size = self._sizeof(value)
            if self.max_bytes is not None and size > self.max_bytes:
                return value
            self._total += size - self._bytes.get(key, 0)
            self._bytes[key] = size
        self._d[key] = value
        self._d.move_to_end(key)
        while len(self._d) > self.max_entries or (
            self.max_bytes is not None and self.nbytes > self.max_bytes
        ):
            old, _ = self._d.popitem(last=False)
            self._total -= self._bytes.pop(old, 0)
        return value

    def clear(self) -> None:
        """Drop every entry and reset the counters."""
        self._d.clear()
        self._bytes.clear()
        self._total = 0
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._d)


def clear_caches() -> None:
    """Empty every memo cache of the process (they are content-keyed, so this only frees
    memory or resets the counters)."""
    for c in _ALL:
        c.clear()
