"""Adversarial deletion requests: choose the training samples whose unlearning hurts most.

Threat model (Jasiorski, Klonowski & Woźniak, "How to Protect Models against Adversarial
Unlearning?", arXiv 2507.10886; papers.md §3.4): an adversary may only *ask* for samples to be
deleted — within a budget (k samples or a fraction of the training split) and optional
constraints (one class, a set of classes it may own, the ids it controls). Its objective is the
largest drop in test accuracy after the owner's (approximate) unlearning method honours the
request. The healing paper's code compares ``random``, class-targeted random and
lowest-true-class-logit requests; this toolkit adds loss-, gradient- and influence-based scores
and an ``adaptive`` search against a proxy of the target method.

This module holds the entry point :func:`select_request` and the heuristic strategies
(``random``, ``class``, ``lowest_logit``, ``highest_loss``, ``gradient_norm``, ``influence``);
the registry, context and constraint checks are in :mod:`obliviate.attacks.selection`, the
per-sample scores in :mod:`obliviate.attacks.scoring` and the ``adaptive`` strategy in
:mod:`obliviate.attacks.adaptive`. Importing this module registers all of them.

Every strategy is registered in :data:`REQUEST_STRATEGIES` and called through
:func:`select_request`, which guarantees: the request holds exactly ``k`` distinct ids, all of
``split.train`` (never reserve / test / val), all inside the constraints; the same inputs and
seed give the same request. Scores rank samples in descending order with ties broken by the
smaller id, so selection never depends on the order of the split.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from obliviate.attacks.adaptive import ADAPTIVE_POOL, proxy_damage
from obliviate.attacks.scoring import _head_outputs, influence_scores, sample_scores
from obliviate.attacks.selection import (
    REQUEST_STRATEGIES,
    RequestSelection,
    SelectionContext,
    _reference_ids,
    _subsample,
    candidate_ids,
    resolve_budget,
    top_k,
)
from obliviate.data.dataset import ImageDataset
from obliviate.data.request import ForgetRequest
from obliviate.data.split import Split
from obliviate.errors import ConfigError, ObliviateError, RequestError
from obliviate.utils import resolve_device

__all__ = [
    "ADAPTIVE_POOL",
    "REQUEST_STRATEGIES",
    "RequestSelection",
    "SelectionContext",
    "_head_outputs",
    "candidate_ids",
    "influence_scores",
    "proxy_damage",
    "resolve_budget",
    "sample_scores",
    "select_request",
    "top_k",
]


# ------------------------------------------------------------------------ heuristic strategies


@REQUEST_STRATEGIES.register(
    "random", description="uniform random sample of the allowed ids (the baseline)", objective=""
)
def _random(ctx: SelectionContext) -> tuple[Tensor, float, dict[str, Any]]:
    idx = ctx.rng(1).choice(len(ctx.candidates), ctx.k, replace=False)
    return ctx.candidates[torch.from_numpy(np.sort(idx))], math.nan, {}


@REQUEST_STRATEGIES.register(
    "class",
    description="random sample within one class (the healing paper's class-targeted request)",
    objective="",
)
def _class(ctx: SelectionContext, target_class: int | None = None) -> tuple[Tensor, float, dict]:
    labels = ctx.dataset.labels_of(ctx.candidates)
    counts = torch.bincount(labels, minlength=ctx.dataset.num_classes)
    if target_class is None:
        ok = [int(c) for c in torch.nonzero(counts >= ctx.k).flatten()]
        if not ok:
            raise RequestError(
                f"class strategy: no allowed class has {ctx.k} candidate samples "
                f"(per-class counts {counts.tolist()})"
            )
        target_class = int(ctx.rng(2).choice(ok))
    tc = int(target_class)
    if not 0 <= tc < ctx.dataset.num_classes:
        raise ConfigError(f"target_class {tc} is not a class of dataset {ctx.dataset.name!r}")
    if counts[tc] < ctx.k:
        raise RequestError(
            f"class strategy: class {tc} has {int(counts[tc])} allowed training samples, "
            f"fewer than the budget {ctx.k}"
        )
    pool = ctx.candidates[labels == tc]
    idx = ctx.rng(3).choice(len(pool), ctx.k, replace=False)
    return pool[torch.from_numpy(np.sort(idx))], math.nan, {"target_class": tc}


def _scored(kind: str, objective: str, description: str) -> None:
    def fn(
        ctx: SelectionContext, params: str = "head", batch_size: int = 64
    ) -> tuple[Tensor, float, dict[str, Any]]:
        x, y = ctx.tensors()
        s = sample_scores(
            kind, ctx.model, x, y, device=ctx.device, params=params, batch_size=batch_size
        )
        chosen = top_k(ctx.candidates, s, ctx.k)
        picked = torch.isin(ctx.candidates, chosen)
        return chosen, float(s[picked].mean()), {"candidate_score_mean": float(s.mean())}

    fn.__doc__ = f"Top-k allowed ids by {description}."
    REQUEST_STRATEGIES.register(kind, description=description, objective=objective)(fn)


_scored("lowest_logit", "mean −(true-class logit) of the request", "lowest true-class logit")
_scored("highest_loss", "mean cross-entropy of the request", "highest cross-entropy loss")
_scored(
    "gradient_norm",
    "mean per-sample ‖∇θ loss‖ of the request",
    "largest per-sample loss-gradient norm",
)


@REQUEST_STRATEGIES.register(
    "influence",
    description="largest estimated increase of held-out loss when removed (influence functions)",
    objective="predicted increase of the held-out mean loss (first order, summed over the request)",
)
def _influence(
    ctx: SelectionContext,
    reference: str = "auto",
    reference_max: int = 2000,
    hessian_max: int = 5000,
    damping: float = 0.01,
    cg_iters: int = 100,
) -> tuple[Tensor, float, dict[str, Any]]:
    """Koh & Liang influence on the final layer (:func:`influence_scores`). The reference loss is
    measured on held-out data (``val`` when the split has it: the attacker does not need the
    owner's test set); the Hessian on a seeded subsample of the training split."""
    ref_ids, ref_name = _reference_ids(ctx.split, reference, reference_max, ctx.seed)
    hess_ids, _ = _subsample(ctx.split.train, hessian_max, ctx.seed + 1)
    x, y = ctx.tensors()
    xr, yr = ctx.dataset.tensors(ref_ids)
    xh, yh = ctx.dataset.tensors(hess_ids)
    s, info = influence_scores(
        ctx.model, x, y, xr, yr, xh, yh, damping=damping, cg_iters=cg_iters, device=ctx.device
    )
    chosen = top_k(ctx.candidates, s, ctx.k)
    n = len(ctx.split.train)
    score = float(s[torch.isin(ctx.candidates, chosen)].sum()) / n
    return chosen, score, {"reference": ref_name, "n_reference": len(ref_ids), **info}


# -------------------------------------------------------------------------------- entry point


def select_request(
    strategy: str,
    model: nn.Module,
    dataset: ImageDataset,
    split: Split,
    *,
    budget: int | float,
    seed: int = 0,
    classes: Sequence[int] | None = None,
    controlled_ids: Sequence[int] | Tensor | None = None,
    device: str | torch.device = "cpu",
    **options: Any,
) -> RequestSelection:
    """Select a deletion request of ``budget`` samples with a registered ``strategy``.

    ``budget``: an int (samples) or a float in (0, 1) (fraction of ``split.train``).
    ``classes``: the classes the attacker may request (one class = a class-constrained request).
    ``controlled_ids``: the training ids the attacker controls. ``options`` go to the strategy
    (e.g. ``method=`` for ``adaptive``, ``target_class=`` for ``class``); unknown options raise
    :class:`ConfigError`. Guarantees: exactly ``k`` distinct ids, all in ``split.train`` and
    inside the constraints (validated); deterministic under ``seed``; ``model`` is unchanged.
    """
    fn = REQUEST_STRATEGIES.get(strategy)
    accepted = set(inspect.signature(fn).parameters) - {"ctx"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(
            f"strategy {strategy!r} has no option(s) {unknown}; known: {sorted(accepted)}"
        )
    k = resolve_budget(budget, len(split.train))
    cand = candidate_ids(dataset, split, classes=classes, controlled_ids=controlled_ids)
    if len(cand) < k:
        raise RequestError(
            f"budget {k} exceeds the {len(cand)} training samples allowed by the constraints "
            f"(classes={list(classes) if classes is not None else 'any'}, controlled_ids="
            f"{'given' if controlled_ids is not None else 'any'})"
        )
    ctx = SelectionContext(
        model=model,
        dataset=dataset,
        split=split,
        candidates=cand,
        k=k,
        seed=int(seed),
        device=resolve_device(device),
        classes=None if classes is None else [int(c) for c in classes],
        controlled_ids=None
        if controlled_ids is None
        else torch.as_tensor(controlled_ids, dtype=torch.int64),
    )
    ids, score, details = fn(ctx, **options)
    ids = torch.sort(torch.as_tensor(ids, dtype=torch.int64).reshape(-1)).values
    if len(ids) != k or len(torch.unique(ids)) != k or not bool(torch.isin(ids, cand).all()):
        raise ObliviateError(
            f"strategy {strategy!r} returned {len(ids)} ids that break its contract (want {k} "
            "distinct allowed ids)"
        )
    labels = dataset.labels_of(ids)
    per_class = torch.bincount(labels, minlength=dataset.num_classes).tolist()
    details = {**details, "k": k, "n_candidates": len(cand), "per_class": per_class}
    meta = {
        "strategy": strategy,
        "score": None if math.isnan(score) else score,
        "seed": int(seed),
        "budget": budget,
        "classes": ctx.classes,
    }
    req = ForgetRequest(ids, name=f"{strategy}-k{k}-seed{seed}", meta=meta).validate(split)
    return RequestSelection(req, strategy, float(score), details)
