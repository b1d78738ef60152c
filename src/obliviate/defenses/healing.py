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
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from obliviate.config import EPOCHS_MAX, LR_MAX, opt, validate_config
from obliviate.data.dataset import ImageDataset, _fmt_ids
from obliviate.data.request import ForgetRequest
from obliviate.data.split import Split
from obliviate.defenses.similarity import (
    PoolExhaustedError,
    TwinIndex,
    check_similarity,
    greedy_unique,
    model_state_hash,
    uses_features,
)
from obliviate.defenses.spares import Fallback, SparePool, _check_fallback, _exhausted
from obliviate.errors import ConfigError, RequestError
from obliviate.train import TrainConfig, evaluate, fit

__all__ = [
    "HealConfig",
    "HealResult",
    "PoolExhaustedError",
    "SparePool",
    "heal",
    "match_twins",
]


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
