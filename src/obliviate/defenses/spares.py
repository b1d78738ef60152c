"""The general spare set of healing (Jasiorski, Klonowski & Woźniak 2025, arXiv 2507.10886,
``research/papers.md`` §3.3–3.4): :class:`SparePool`, k random reserve elements of which each
unlearned element takes the most similar unused one, which then leaves the pool for good; its
bookkeeping is a JSON file written atomically after every take, so a restart never reuses a
spare."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from obliviate._io import atomic_write_json, read_json
from obliviate.data.dataset import ImageDataset, _fmt_ids
from obliviate.data.split import Split
from obliviate.defenses.similarity import (
    CandidateSearcher,
    PoolExhaustedError,
    check_similarity,
    greedy_unique,
    model_state_hash,
    uses_features,
)
from obliviate.errors import CheckpointError, ConfigError

POOL_FORMAT = "obliviate.spare_pool/1"
Fallback = Literal["error", "remaining_only"]


def _check_fallback(fallback: str) -> None:
    if fallback not in ("error", "remaining_only"):
        raise ConfigError(f"fallback must be 'error' or 'remaining_only', got {fallback!r}")


def _exhausted(ids: list[int], labels: list[int], what: str) -> PoolExhaustedError:
    classes = sorted(set(labels))
    return PoolExhaustedError(
        f"{what} is exhausted: no unused same-class element left for {len(ids)} requested id(s) "
        f"{_fmt_ids(ids)} (classes {classes}); use a larger reserve, or fallback='remaining_only' "
        "to heal those without a replacement"
    )


# ------------------------------------------------------------------------------------------ twins


class SparePool:
    """The general spare set: k reserve elements, each handed out at most once, ever.

    ``used`` maps spare id → the request id it replaced. With a ``path`` the pool is persisted
    (atomic JSON) after every :meth:`take`, before the spares are returned, so a process that
    restarts from the file never hands out a used spare again.
    """

    def __init__(
        self,
        ids: Sequence[int] | Tensor,
        labels: Sequence[int] | Tensor,
        *,
        split_hash: str,
        dataset_fingerprint: str,
        used: dict[int, int] | None = None,
        seed: int | None = None,
        path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.ids = torch.as_tensor(ids, dtype=torch.int64).reshape(-1)
        self.labels = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
        if len(self.ids) != len(self.labels):
            raise ConfigError(f"spare pool: {len(self.ids)} ids but {len(self.labels)} labels")
        if len(torch.unique(self.ids)) != len(self.ids):
            raise ConfigError("spare pool: duplicate spare ids")
        self.split_hash = split_hash
        self.dataset_fingerprint = dataset_fingerprint
        self.used: dict[int, int] = dict(used or {})
        unknown = sorted(set(self.used) - set(self.ids.tolist()))
        if unknown:
            raise ConfigError(f"spare pool: used ids not in the pool: {_fmt_ids(unknown)}")
        self.seed = seed
        self.path = None if path is None else Path(path)
        self._searchers: dict[tuple[str, str | None, str], CandidateSearcher] = {}

    @classmethod
    def from_split(
        cls,
        dataset: ImageDataset,
        split: Split,
        *,
        size: int | None = None,
        seed: int = 0,
        path: str | os.PathLike[str] | None = None,
    ) -> SparePool:
        """``size`` random reserve elements (seeded; ``None``: the whole reserve) as a new pool.
        With ``path`` the fresh pool is saved there at once."""
        split.check(dataset)
        n = len(split.reserve)
        if n == 0:
            raise ConfigError(
                "the split has no reserve: spares are elements held out of training; make the "
                "split with make_split(..., reserve=N)"
            )
        size = n if size is None else int(size)
        if not 1 <= size <= n:
            raise ConfigError(f"spare pool size must lie in [1, {n}] (the reserve), got {size}")
        perm = np.random.default_rng(seed).permutation(n)[:size]
        ids = torch.sort(split.reserve[torch.from_numpy(np.sort(perm))]).values
        pool = cls(
            ids,
            dataset.labels_of(ids),
            split_hash=split.hash,
            dataset_fingerprint=dataset.fingerprint(),
            seed=seed,
            path=path,
        )
        if path is not None:
            pool.save()
        return pool

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def remaining(self) -> Tensor:
        """Ids of the spares not yet used."""
        if not self.used:
            return self.ids.clone()
        return self.ids[~torch.isin(self.ids, torch.as_tensor(list(self.used)))]

    def check(self, dataset: ImageDataset | None = None, split: Split | None = None) -> None:
        """Raise :class:`CheckpointError` if the pool belongs to another split or dataset."""
        if split is not None and split.hash != self.split_hash:
            raise CheckpointError(
                f"spare pool was drawn from split {self.split_hash[:12]}, not split "
                f"{split.hash[:12]}"
            )
        if dataset is not None and dataset.fingerprint() != self.dataset_fingerprint:
            raise CheckpointError(
                f"spare pool was drawn from dataset content {self.dataset_fingerprint[:12]}, "
                f"not {dataset.fingerprint()[:12]}"
            )

    def searcher(
        self,
        dataset: ImageDataset,
        similarity: str,
        model: nn.Module | None = None,
        *,
        shrinkage: str | float = "ledoit_wolf",
        batch_size: int = 1024,
        device: str = "cpu",
    ) -> CandidateSearcher:
        """All spares embedded for ``similarity`` (cached per similarity, model weights and
        Mahalanobis shrinkage; the space is fitted on the whole pool, used spares included)."""
        check_similarity(similarity)
        self.check(dataset)
        mh = model_state_hash(model) if model is not None and uses_features(similarity) else None
        key = (similarity, mh, str(shrinkage) if similarity.endswith("mahalanobis") else "")
        if key not in self._searchers:
            self._searchers[key] = CandidateSearcher.build(
                dataset,
                self.ids,
                similarity,
                model=model,
                shrinkage=shrinkage,
                batch_size=batch_size,
                device=device,
            )
        return self._searchers[key]

    def take(
        self,
        query_x: Tensor,
        query_y: Tensor,
        similarity: str = "pixel_l2",
        *,
        dataset: ImageDataset,
        query_ids: Sequence[int] | Tensor | None = None,
        model: nn.Module | None = None,
        same_class: bool = True,
        k: int = 8,
        fallback: Fallback = "error",
        shrinkage: str | float = "ledoit_wolf",
        batch_size: int = 1024,
        device: str = "cpu",
    ) -> Tensor:
        """For each query (in order) the most similar unused spare; those spares become used.

        Returns the spare ids (``-1`` where none was left and ``fallback="remaining_only"``).
        Same class as the query unless ``same_class=False``. Atomic: if the pool is exhausted
        and ``fallback="error"``, :class:`PoolExhaustedError` is raised and nothing is marked
        used. With a ``path`` the pool file is rewritten before returning.
        """
        _check_fallback(fallback)
        qy = torch.as_tensor(query_y, dtype=torch.int64).reshape(-1)
        if len(query_x) != len(qy):
            raise ConfigError(f"take: {len(query_x)} query images but {len(qy)} labels")
        qids = (
            torch.full((len(qy),), -1, dtype=torch.int64)
            if query_ids is None
            else torch.as_tensor(query_ids, dtype=torch.int64).reshape(-1)
        )
        if len(qids) != len(qy):
            raise ConfigError(f"take: {len(qids)} query ids but {len(qy)} queries")
        if len(qy) == 0:
            return torch.empty(0, dtype=torch.int64)
        s = self.searcher(
            dataset, similarity, model, shrinkage=shrinkage, batch_size=batch_size, device=device
        )
        qv = s.embed(query_x)
        groups = qy if same_class else None
        used = set(self.used)
        _, ranked = s.search(qv, groups, k, exclude_ids=used)

        def research(q: int, taken: set[int]) -> int | None:
            return s.nearest_free(qv[q], int(qy[q]) if same_class else None, taken)

        picks = greedy_unique(ranked, set(used), research)
        missing = [i for i, p in enumerate(picks) if p is None]
        if missing and fallback == "error":
            raise _exhausted(
                [int(qids[i]) for i in missing], [int(qy[i]) for i in missing], "the spare pool"
            )
        for i, p in enumerate(picks):
            if p is not None:
                self.used[p] = int(qids[i])
        if self.path is not None:
            self.save()
        return torch.as_tensor([-1 if p is None else p for p in picks], dtype=torch.int64)

    # ---------------------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": POOL_FORMAT,
            "ids": self.ids.tolist(),
            "labels": self.labels.tolist(),
            "used": {str(k): v for k, v in sorted(self.used.items())},
            "split_hash": self.split_hash,
            "dataset_fingerprint": self.dataset_fingerprint,
            "seed": self.seed,
        }

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the pool (atomic JSON) to ``path`` (default: its own path, which it keeps)."""
        if path is not None:
            self.path = Path(path)
        if self.path is None:
            raise ConfigError("spare pool: no path to save to; pass save(path)")
        atomic_write_json(self.path, self.to_dict())
        return self.path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        split: Split | None = None,
        dataset: ImageDataset | None = None,
    ) -> SparePool:
        """Read a pool file (it keeps ``path`` and saves back to it); verify split/dataset."""
        path = Path(path)
        d = read_json(path, f"spare pool file {path}", CheckpointError)
        if not isinstance(d, dict) or d.get("format") != POOL_FORMAT:
            raise CheckpointError(f"spare pool file {path}: not a {POOL_FORMAT} file")
        try:
            pool = cls(
                d["ids"],
                d["labels"],
                split_hash=d["split_hash"],
                dataset_fingerprint=d["dataset_fingerprint"],
                used={int(k): int(v) for k, v in d["used"].items()},
                seed=d.get("seed"),
                path=path,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"spare pool file {path} is malformed: {e}") from None
        pool.check(dataset, split)
        return pool


# ------------------------------------------------------------------------------------------ heal


__all__ = ["POOL_FORMAT", "Fallback", "SparePool"]
