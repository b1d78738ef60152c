"""Healing (Jasiorski, Klonowski & Woźniak 2025, "How to Protect Models against Adversarial
Unlearning?", arXiv 2507.10886): after an approximate unlearner has degraded a model, fine-tune it
on the remaining training data plus, for every unlearned element, a similar element that was
never trained on.

Two pools of replacement elements (``research/papers.md`` §3.3–3.4):

* **twins** — for every training element its most similar same-class element of the reserve
  (:class:`~obliviate.defenses.similarity.TwinIndex`, precomputed), matched greedily and uniquely
  (:func:`match_twins`) when several requested elements want the same twin;
* **general spare set** (:class:`SparePool`) — k random reserve elements; each unlearned element
  takes the most similar unused spare, which then leaves the pool for good. The pool's
  bookkeeping is a JSON file written atomically after every take, so a restart never reuses a
  spare. An exhausted pool is a :class:`PoolExhaustedError`, or, with
  ``fallback="remaining_only"``, the element simply gets no replacement.

:func:`heal` fine-tunes a *copy* of the unlearned model on (remaining ∪ replacements) — or on
the remaining data only (``pool="none"``, the notebooks' "RemainOnly" control) — with the one
training loop, :func:`obliviate.train.fit`. Defaults of :class:`HealConfig` are those of the
healing code (``xizula/Model-Healing``): Adam, lr 1e-3 (``HEAL_LR``), the training batch size
(64 on MNIST), no schedule, 1 epoch (the notebooks compare 1 and 5).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from obliviate._io import atomic_write_json, read_json
from obliviate.config import EPOCHS_MAX, LR_MAX, opt, validate_config
from obliviate.data.dataset import ImageDataset, _fmt_ids
from obliviate.data.request import ForgetRequest
from obliviate.data.split import Split
from obliviate.defenses.similarity import (
    CandidateSearcher,
    PoolExhaustedError,
    TwinIndex,
    check_similarity,
    greedy_unique,
    model_state_hash,
    uses_features,
)
from obliviate.errors import CheckpointError, ConfigError, RequestError
from obliviate.train import TrainConfig, evaluate, fit

__all__ = [
    "HealConfig",
    "HealResult",
    "PoolExhaustedError",
    "SparePool",
    "heal",
    "match_twins",
]

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


def match_twins(
    index: TwinIndex,
    request_ids: Sequence[int] | Tensor,
    *,
    dataset: ImageDataset | None = None,
    model: nn.Module | None = None,
    fallback: Fallback = "error",
    device: str = "cpu",
) -> dict[int, int]:
    """Greedy unique twin matching: ``{request id: reserve id}``, each reserve id used once.

    Requested ids are served in the given order, each taking its nearest twin not yet taken (the
    healing notebooks' rule). When all ``index.k`` stored twins of an id are taken, the reserve is
    searched again for its nearest free same-class element — this needs ``dataset`` (and, for
    feature similarities, the ``model`` whose features the index holds). Ids left without a
    twin raise :class:`PoolExhaustedError`, or are left out of the result with
    ``fallback="remaining_only"``.
    """
    _check_fallback(fallback)
    ids = torch.as_tensor(request_ids, dtype=torch.int64).reshape(-1)
    if len(ids) == 0:
        raise RequestError("empty request: no ids to match twins for")
    u, c = torch.unique(ids, return_counts=True)
    if (c > 1).any():
        raise RequestError(f"request has duplicate ids: {_fmt_ids(u[c > 1].tolist())}")
    rows = index.rows(ids)
    ranked = index.neighbors[rows]
    labels = index.train_labels[rows]
    qv_cache: dict[str, Tensor] = {}

    def research(q: int, used: set[int]) -> int | None:
        if dataset is None:
            raise PoolExhaustedError(
                f"all {index.k} stored twins of id {int(ids[q])} are taken by earlier ids of the "
                "request; pass dataset= (and model= for feature similarities) to search the "
                "reserve further, or build the index with a larger k"
            )
        s = index.searcher(dataset, model, device=device)
        if "v" not in qv_cache:
            qv_cache["v"] = s.embed(dataset.tensors(ids)[0])
        qy = int(labels[q]) if index.same_class else None
        return s.nearest_free(qv_cache["v"][q], qy, used)

    picks = greedy_unique(ranked, set(), research)
    missing = [i for i, p in enumerate(picks) if p is None]
    if missing and fallback == "error":
        raise _exhausted(
            [int(ids[i]) for i in missing], [int(labels[i]) for i in missing], "the twin reserve"
        )
    return {int(ids[i]): int(p) for i, p in enumerate(picks) if p is not None}


# ------------------------------------------------------------------------------------- spare pool


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


@dataclass
class HealConfig:
    """Fine-tuning recipe of the healing step (defaults: the healing paper's code)."""

    epochs: int = opt(
        1,
        "Fine-tuning epochs over remaining ∪ replacements (the paper: 1 or 5).",
        ge=1,
        le=EPOCHS_MAX,
    )
    lr: float = opt(
        1e-3, "Learning rate (Model-Healing's HEAL_LR = 1e-3 with Adam).", gt=0, le=LR_MAX
    )
    optimizer: Literal["sgd", "adam", "adamw"] = opt("adam", "Optimiser (the healing code: Adam).")
    batch_size: int = opt(64, "Mini-batch size (the healing code: its training batch, 64).", ge=1)
    weight_decay: float = opt(0.0, "Weight decay (the healing code: none).", ge=0)
    momentum: float = opt(0.9, "SGD momentum (optimizer='sgd' only).", ge=0, lt=1)
    schedule: Literal["constant", "cosine"] = opt(
        "constant", "LR schedule (the healing code: constant)."
    )
    grad_clip: float = opt(0.0, "Clip the global gradient norm (0 disables).", ge=0)
    features_from: Literal["original", "current"] = opt(
        "original",
        "Feature similarities: penultimate features of the original model (default: an "
        "unlearned model's features may be noise) or of the model being healed.",
    )
    k: int = opt(
        8, "Ranked candidates kept per element before greedy matching searches further.", ge=1
    )
    spare_pool_size: int = opt(
        0,
        "Size k of the general spare set drawn from the reserve when none is given (0: all).",
        ge=0,
    )
    fallback: Literal["error", "remaining_only"] = opt(
        "error",
        "An element without a free same-class replacement: error, or heal without one.",
    )
    shrinkage: str = opt(
        "ledoit_wolf", "Mahalanobis covariance: ledoit_wolf, or a ridge as a number (e.g. 1e-5)."
    )

    def __post_init__(self) -> None:
        validate_config(self)
        _check_fallback(self.fallback)

    def train_config(self, seed: int) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            optimizer=self.optimizer,
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            schedule=self.schedule,
            grad_clip=self.grad_clip,
            eval_every=0,
            seed=seed,
        )

    def shrinkage_value(self) -> str | float:
        if self.shrinkage == "ledoit_wolf":
            return self.shrinkage
        try:
            return float(self.shrinkage)
        except ValueError:
            raise ConfigError(
                f"heal: shrinkage must be 'ledoit_wolf' or a number, got {self.shrinkage!r}"
            ) from None


@dataclass
class HealResult:
    """The healed model (a new object, eval mode), the replacements used and what it cost."""

    model: nn.Module
    twins: dict[int, int]
    stats: dict[str, Any] = field(default_factory=dict)


def heal(
    model: nn.Module,
    dataset: ImageDataset,
    split: Split,
    request: ForgetRequest,
    *,
    pool: Literal["twins", "spares", "none"] = "twins",
    similarity: str | None = None,
    epochs: int | None = None,
    config: HealConfig | None = None,
    train_config: TrainConfig | None = None,
    index: TwinIndex | None = None,
    spare_pool: SparePool | None = None,
    original: nn.Module | None = None,
    seed: int = 0,
    device: str = "cpu",
    evaluate_test: bool = False,
) -> HealResult:
    """Fine-tune a copy of the unlearned ``model`` on (train \\ request) ∪ replacements.

    * ``pool="twins"``: each requested element's twin, matched greedily and uniquely — from
      ``index`` when given (it must belong to this split and, for feature similarities, to the
      ``original``'s weights), else searched at request time in the reserve, as the notebooks do;
    * ``pool="spares"``: the most similar unused element of ``spare_pool`` (a fresh seeded pool
      of ``config.spare_pool_size`` reserve elements when none is given); its bookkeeping is
      updated (and saved, if it has a path);
    * ``pool="none"``: the remaining data only (the notebooks' RemainOnly control).

    ``similarity`` defaults to the index's, else ``feature_cosine``. Feature similarities use
    ``original`` (``config.features_from="original"``, default) or ``model`` itself
    (``"current"``). ``epochs`` overrides ``config.epochs``; ``train_config`` replaces the whole
    fine-tuning recipe (its epochs and seed are set from ``epochs``/``seed``). The input model is
    never modified. Same inputs and seed → the same healed weights.
    """
    cfg = config or HealConfig()
    if epochs is not None:
        cfg = dataclasses.replace(cfg, epochs=epochs)
    if pool not in ("twins", "spares", "none"):
        raise ConfigError(f"heal: pool must be 'twins', 'spares' or 'none', got {pool!r}")
    split.check(dataset)
    request.validate(split)
    if index is not None:
        sim = similarity or index.similarity
        if sim != index.similarity:
            raise ConfigError(
                f"heal: similarity={sim!r} but the twin index uses {index.similarity!r}"
            )
    else:
        sim = similarity or "feature_cosine"
    check_similarity(sim)
    feat_model: nn.Module | None = None
    if pool != "none" and uses_features(sim):
        feat_model = original if cfg.features_from == "original" else model
        if feat_model is None:
            raise ConfigError(
                f"heal: similarity {sim!r} compares the original model's penultimate features; "
                "pass original=, or set features_from='current' to use the unlearned model's"
            )
    t0 = time.perf_counter()
    req = request.tensor
    replacements: dict[int, int] = {}
    if pool == "twins":
        if index is not None:
            index.check(
                split=split,
                dataset=dataset,
                expect_checkpoint_hash=None if feat_model is None else model_state_hash(feat_model),
            )
            replacements = match_twins(
                index, req, dataset=dataset, model=feat_model, fallback=cfg.fallback, device=device
            )
        else:
            tmp_pool = SparePool(
                split.reserve,
                dataset.labels_of(split.reserve),
                split_hash=split.hash,
                dataset_fingerprint=dataset.fingerprint(),
            )
            replacements = _take(tmp_pool, dataset, req, sim, feat_model, cfg, device)
    elif pool == "spares":
        if spare_pool is None:
            spare_pool = SparePool.from_split(
                dataset, split, size=cfg.spare_pool_size or None, seed=seed
            )
        spare_pool.check(dataset, split)
        replacements = _take(spare_pool, dataset, req, sim, feat_model, cfg, device)
    match_s = time.perf_counter() - t0

    remaining = split.train[~torch.isin(split.train, req)]
    extra = torch.as_tensor(list(replacements.values()), dtype=torch.int64)
    x, y = dataset.tensors(torch.cat([remaining, extra]))
    tcfg = (
        cfg.train_config(seed)
        if train_config is None
        else dataclasses.replace(train_config, epochs=cfg.epochs, seed=seed)
    )
    healed = copy.deepcopy(model)
    t1 = time.perf_counter()
    hist = fit(healed, x, y, tcfg, device=device, show_progress=False, desc="heal")
    fit_s = time.perf_counter() - t1
    for p in healed.parameters():
        p.grad = None
    stats: dict[str, Any] = {
        "pool": pool,
        "similarity": sim if pool != "none" else None,
        "epochs": cfg.epochs,
        "n_remaining": len(remaining),
        "n_replacements": len(replacements),
        "n_without_replacement": (len(req) - len(replacements)) if pool != "none" else len(req),
        "match_seconds": match_s,
        "fit_seconds": fit_s,
        "seconds": time.perf_counter() - t0,
        "train_config": tcfg.to_dict(),
        "final_loss": hist.epochs[-1].loss if hist.epochs else None,
    }
    if evaluate_test:
        stats["acc/test"] = evaluate(
            healed, dataset, split, ("test",), per_class=False, device=device
        )["acc/test"]
    return HealResult(healed, replacements, stats)


def _take(
    sp: SparePool,
    dataset: ImageDataset,
    req: Tensor,
    similarity: str,
    feat_model: nn.Module | None,
    cfg: HealConfig,
    device: str,
) -> dict[int, int]:
    """Request ids → replacements taken from ``sp`` (the ones without one left out)."""
    qx, qy = dataset.tensors(req)
    got = sp.take(
        qx,
        qy,
        similarity,
        dataset=dataset,
        query_ids=req,
        model=feat_model,
        k=cfg.k,
        fallback=cfg.fallback,
        shrinkage=cfg.shrinkage_value(),
        device=device,
    )
    return {int(r): int(s) for r, s in zip(req.tolist(), got.tolist(), strict=True) if s >= 0}
