"""The twin index for healing: every training element's ``k`` most similar reserve elements,
precomputed once (the healing paper's *twins*: Jasiorski, Klonowski & Woźniak 2025,
arXiv 2507.10886; code ``xizula/Model-Healing``; see ``research/papers.md`` §3.3), and its
on-disk format (:data:`INDEX_FORMAT`: a folder with safetensors + a JSON sidecar, written
atomically and verified by hash on load).

An index of feature vectors is keyed by the hash of the weights that produced them
(:func:`~obliviate.defenses.search.model_state_hash`) and refuses to be used with other weights;
every index is keyed by its split hash and dataset fingerprint.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from obliviate._io import atomic_dir, read_json, sha256_file
from obliviate.data.dataset import ImageDataset, _fmt_ids
from obliviate.data.split import Split
from obliviate.defenses.search import (
    CandidateSearcher,
    SimilaritySpace,
    check_similarity,
    model_state_hash,
    uses_features,
)
from obliviate.errors import CheckpointError, ConfigError, RequestError

__all__ = ["INDEX_FORMAT", "INDEX_META", "INDEX_TENSORS", "TwinIndex"]

INDEX_FORMAT = "obliviate.twin_index/1"
INDEX_TENSORS, INDEX_META = "index.safetensors", "index.json"


@dataclass
class TwinIndex:
    """For every training element, its ``k`` most similar reserve elements (same class by
    default), nearest first — the healing paper's *twins*, precomputed.

    ``neighbors`` holds reserve ids (``-1`` when a class has fewer than ``k`` reserve elements),
    ``distances`` the similarity's distance. Keyed by the split hash and, for feature
    similarities, by ``checkpoint_hash`` (the :func:`model_state_hash` of the weights whose
    features it holds, unless the caller names another key).
    """

    similarity: str
    train_ids: Tensor
    train_labels: Tensor
    neighbors: Tensor
    distances: Tensor
    reserve_ids: Tensor
    space: SimilaritySpace
    split_hash: str
    dataset_fingerprint: str
    checkpoint_hash: str | None = None
    same_class: bool = True
    meta: dict[str, Any] = field(default_factory=dict)
    _pos: dict[int, int] = field(default_factory=dict, repr=False)
    _searcher: CandidateSearcher | None = field(default=None, repr=False)

    @property
    def k(self) -> int:
        return int(self.neighbors.shape[1])

    @classmethod
    def build(
        cls,
        dataset: ImageDataset,
        split: Split,
        *,
        similarity: str,
        model: nn.Module | None = None,
        checkpoint_hash: str | None = None,
        same_class: bool = True,
        k: int = 8,
        shrinkage: str | float = "ledoit_wolf",
        batch_size: int = 1024,
        chunk: int = 4096,
        device: str = "cpu",
    ) -> TwinIndex:
        """Index every ``split.train`` element against ``split.reserve`` with one similarity.

        Feature similarities embed with ``model`` (pass the *original* model). ``checkpoint_hash``
        defaults to :func:`model_state_hash` of ``model``. Cost: one forward pass per train and
        reserve element (feature similarities) plus one chunked matrix product per class.
        """
        split.check(dataset)
        check_similarity(similarity)
        if len(split.reserve) == 0:
            raise ConfigError(
                "the split has no reserve: twins come from elements held out of training; make "
                "the split with make_split(..., reserve=N)"
            )
        feat = uses_features(similarity)
        if feat and model is None:
            raise ConfigError(
                f"similarity {similarity!r} needs model= (the original model whose penultimate "
                "features are compared)"
            )
        searcher = CandidateSearcher.build(
            dataset,
            split.reserve,
            similarity,
            model=model,
            shrinkage=shrinkage,
            batch_size=batch_size,
            device=device,
        )
        xt, yt = dataset.tensors(split.train)
        dist, nb = searcher.search(searcher.embed(xt), yt if same_class else None, k, chunk=chunk)
        ck = (checkpoint_hash or searcher.model_hash) if feat else checkpoint_hash
        return cls(
            similarity=similarity,
            train_ids=split.train.clone(),
            train_labels=yt,
            neighbors=nb,
            distances=dist,
            reserve_ids=split.reserve.clone(),
            space=searcher.space,
            split_hash=split.hash,
            dataset_fingerprint=dataset.fingerprint(),
            checkpoint_hash=ck,
            same_class=same_class,
            meta={"n_train": len(split.train), "n_reserve": len(split.reserve)},
            _searcher=searcher,
        )

    def rows(self, ids: Tensor | Sequence[int]) -> Tensor:
        """Row positions of training ids; ids not in the index raise :class:`RequestError`."""
        if not self._pos:
            self._pos = {int(i): p for p, i in enumerate(self.train_ids.tolist())}
        ids_l = torch.as_tensor(ids, dtype=torch.int64).reshape(-1).tolist()
        missing = [i for i in ids_l if i not in self._pos]
        if missing:
            raise RequestError(
                f"{len(missing)} id(s) are not training elements of this twin index "
                f"(split {self.split_hash[:12]}): {_fmt_ids(missing)}"
            )
        return torch.as_tensor([self._pos[i] for i in ids_l], dtype=torch.int64)

    def twins_of(self, ids: Tensor | Sequence[int]) -> Tensor:
        """The (len(ids), k) ranked reserve ids of training ids (not unique across ids)."""
        return self.neighbors[self.rows(ids)]

    def check(
        self,
        *,
        split: Split | None = None,
        dataset: ImageDataset | None = None,
        expect_checkpoint_hash: str | None = None,
        origin: str = "twin index",
    ) -> None:
        """Raise :class:`CheckpointError` if the index belongs to another split, dataset content
        or (feature similarities) other weights than expected."""
        if split is not None and split.hash != self.split_hash:
            raise CheckpointError(
                f"{origin} was built for split {self.split_hash[:12]}, not split {split.hash[:12]}"
            )
        if dataset is not None and dataset.fingerprint() != self.dataset_fingerprint:
            raise CheckpointError(
                f"{origin} was built on dataset content {self.dataset_fingerprint[:12]}, not "
                f"{dataset.fingerprint()[:12]}"
            )
        if (
            expect_checkpoint_hash is not None
            and uses_features(self.similarity)
            and expect_checkpoint_hash != self.checkpoint_hash
        ):
            raise CheckpointError(
                f"{origin} holds {self.similarity} features of checkpoint "
                f"{str(self.checkpoint_hash)[:12]}, but checkpoint {expect_checkpoint_hash[:12]} "
                "was expected; rebuild the index with that model's features"
            )

    def searcher(
        self,
        dataset: ImageDataset,
        model: nn.Module | None = None,
        *,
        batch_size: int = 1024,
        device: str = "cpu",
    ) -> CandidateSearcher:
        """The reserve embedded in this index's space (built on first use, then cached)."""
        if self._searcher is not None:
            return self._searcher
        self.check(dataset=dataset)
        if uses_features(self.similarity):
            if model is None:
                raise ConfigError(
                    f"the twin index compares {self.similarity} features: pass the model whose "
                    "features it holds (model=) to search beyond its stored neighbours"
                )
            self.check(expect_checkpoint_hash=model_state_hash(model))
        self._searcher = CandidateSearcher.build(
            dataset,
            self.reserve_ids,
            self.similarity,
            model=model,
            space=self.space,
            batch_size=batch_size,
            device=device,
        )
        return self._searcher

    # -------------------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index atomically: folder ``path`` with safetensors + a JSON sidecar."""
        import safetensors.torch

        path = Path(path)
        tensors = {
            "train_ids": self.train_ids.contiguous(),
            "train_labels": self.train_labels.contiguous(),
            "neighbors": self.neighbors.contiguous(),
            "distances": self.distances.contiguous(),
            "reserve_ids": self.reserve_ids.contiguous(),
            **self.space.tensors(),
        }
        with atomic_dir(path) as tmp:
            safetensors.torch.save_file(tensors, str(tmp / INDEX_TENSORS))
            meta = {
                "format": INDEX_FORMAT,
                "similarity": self.similarity,
                "split_hash": self.split_hash,
                "dataset_fingerprint": self.dataset_fingerprint,
                "checkpoint_hash": self.checkpoint_hash,
                "same_class": self.same_class,
                "k": self.k,
                "shrinkage": self.space.shrinkage,
                "tensors_sha256": sha256_file(tmp / INDEX_TENSORS),
                "meta": self.meta,
            }
            (tmp / INDEX_META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        expect_checkpoint_hash: str | None = None,
        expect_split_hash: str | None = None,
        expect_similarity: str | None = None,
    ) -> TwinIndex:
        """Read and verify an index folder; refuse a corrupt file, another split, another
        similarity, or (feature similarities) features of other weights than expected."""
        import safetensors.torch
        from safetensors import SafetensorError

        path = Path(path)
        mp, tp = path / INDEX_META, path / INDEX_TENSORS
        if not path.is_dir():
            raise CheckpointError(
                f"twin index {path} does not exist (expected a folder with {INDEX_META})"
            )
        meta = read_json(
            mp,
            f"twin index {path}: {INDEX_META}",
            CheckpointError,
            missing="is missing",
            corrupt="is corrupt",
        )
        if not isinstance(meta, dict) or meta.get("format") != INDEX_FORMAT:
            raise CheckpointError(f"twin index {path}: not a {INDEX_FORMAT} index")
        if not tp.exists() or sha256_file(tp) != meta.get("tensors_sha256"):
            raise CheckpointError(
                f"twin index {path}: {INDEX_TENSORS} is missing, corrupt or truncated"
            )
        try:
            t = safetensors.torch.load_file(str(tp))
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"twin index {path}: cannot read {INDEX_TENSORS}: {e}") from None
        sim = check_similarity(meta["similarity"])
        space = SimilaritySpace(sim, t.get("space_mean"), t.get("space_whiten"), meta["shrinkage"])
        idx = cls(
            similarity=sim,
            train_ids=t["train_ids"],
            train_labels=t["train_labels"],
            neighbors=t["neighbors"],
            distances=t["distances"],
            reserve_ids=t["reserve_ids"],
            space=space,
            split_hash=meta["split_hash"],
            dataset_fingerprint=meta["dataset_fingerprint"],
            checkpoint_hash=meta["checkpoint_hash"],
            same_class=bool(meta["same_class"]),
            meta=dict(meta.get("meta") or {}),
        )
        if expect_similarity is not None and expect_similarity != sim:
            raise CheckpointError(
                f"twin index {path} uses similarity {sim!r}, not {expect_similarity!r}"
            )
        if expect_split_hash is not None and expect_split_hash != idx.split_hash:
            raise CheckpointError(
                f"twin index {path} was built for split {idx.split_hash[:12]}, not split "
                f"{expect_split_hash[:12]}"
            )
        idx.check(expect_checkpoint_hash=expect_checkpoint_hash, origin=f"twin index {path}")
        return idx
