"""The ``adaptive`` request strategy: a greedy (1+λ) search over candidate requests, each
scored by :func:`proxy_damage`, a fast proxy of the owner's unlearning method (threat model of
Jasiorski, Klonowski & Woźniak, arXiv 2507.10886; papers.md §3.4).

Importing this module registers ``adaptive`` in
:data:`~obliviate.attacks.selection.REQUEST_STRATEGIES`; its default :data:`ADAPTIVE_POOL` names
strategies registered by :mod:`obliviate.attacks.requests`, which imports this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from obliviate.attacks.selection import (
    REQUEST_STRATEGIES,
    SelectionContext,
    _reference_ids,
    _subsample,
)
from obliviate.data.dataset import ImageDataset
from obliviate.data.split import Split
from obliviate.errors import ConfigError
from obliviate.inference import batched_logits
from obliviate.unlearn import UNLEARNERS, TensorSet, UnlearnTask, create_unlearner

__all__ = ["ADAPTIVE_POOL", "proxy_damage"]

#: Strategies whose requests seed the adaptive search.
#: ``random`` comes last so that, between equally damaging candidates, a heuristic one wins.
ADAPTIVE_POOL: tuple[str, ...] = (
    "lowest_logit",
    "highest_loss",
    "gradient_norm",
    "influence",
    "random",
)


def proxy_damage(
    model: nn.Module,
    dataset: ImageDataset,
    split: Split,
    request_ids: Tensor,
    *,
    method: str,
    method_options: dict[str, Any] | None = None,
    proxy_steps: int = 20,
    proxy_retain: int = 2000,
    eval_ids: Tensor,
    seed: int = 0,
    train_config: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
    base: tuple[float, float] | None = None,
) -> tuple[float, float]:
    """(accuracy drop in pp, mean cross-entropy increase) on ``eval_ids`` after a fast proxy of
    ``method`` unlearns the request; the loss increase breaks ties between equal accuracy drops.

    The proxy runs the registered method on a seeded subsample of ``proxy_retain`` retain
    samples, with its ``max_steps`` capped at ``proxy_steps`` when the method has that option.
    An exact method (``retrain``, ``sisa``) would have to retrain from scratch, so its proxy is
    ``finetune`` on the retain subsample — continued training without the request, the cheap
    stand-in for "the data are gone" (documented deviation: it measures the damage of losing
    the data, not of approximating the removal).
    """
    cls = UNLEARNERS.get(method)
    name = "finetune" if {"exact", "needs_ensemble"} & set(cls.tags) else method
    opts = dict(method_options or {}) if name == method else {}
    pcls = UNLEARNERS.get(name)
    if "max_steps" in {f for f in pcls.Config.__dataclass_fields__} and proxy_steps > 0:
        opts["max_steps"] = proxy_steps
    u = create_unlearner(name, **opts)
    retain_ids = split.train[~torch.isin(split.train, request_ids)]
    retain_ids, _ = _subsample(retain_ids, proxy_retain, seed + 7)
    xf, yf = dataset.tensors(request_ids)
    xr, yr = dataset.tensors(retain_ids)
    task = UnlearnTask(
        forget=TensorSet(xf, yf, request_ids.clone()),
        _retain=TensorSet(xr, yr, retain_ids.clone()),
        num_classes=dataset.num_classes,
        seed=seed,
        device=str(device),
        train_config=train_config,
    )
    xe, ye = dataset.tensors(eval_ids)
    if base is None:
        base = _acc_loss(model, xe, ye, device)
    acc, loss = _acc_loss(u.unlearn(model, task).model, xe, ye, device)
    return base[0] - acc, loss - base[1]


def _acc_loss(
    model: nn.Module, x: Tensor, y: Tensor, device: str | torch.device
) -> tuple[float, float]:
    """Accuracy (percent) and mean cross-entropy of ``model`` on (x, y)."""
    z = batched_logits(model, x, device=device)
    return 100.0 * float((z.argmax(1) == y).double().mean()), float(F.cross_entropy(z, y))


@REQUEST_STRATEGIES.register(
    "adaptive",
    description="greedy search over candidate requests scored by a fast proxy of the target "
    "unlearning method",
    objective="accuracy drop (pp) on held-out data after the proxy unlearning",
)
def _adaptive(
    ctx: SelectionContext,
    method: str | None = None,
    method_options: dict[str, Any] | None = None,
    pool: Sequence[str] = ADAPTIVE_POOL,
    rounds: int = 2,
    mutants: int = 2,
    swap_fraction: float = 0.25,
    proxy_steps: int = 20,
    proxy_retain: int = 2000,
    proxy_eval: int = 500,
    reference: str = "auto",
    train_config: dict[str, Any] | None = None,
) -> tuple[Tensor, float, dict[str, Any]]:
    """Greedy (1+λ) search, not bilevel. Round 1 evaluates one request from each strategy of
    ``pool`` (same budget and constraints) with :func:`proxy_damage`; each later round makes
    ``mutants`` copies of the best request with ``swap_fraction`` of its ids replaced by ids of
    the other candidate requests (or any allowed id once those are used up) and keeps a mutant
    only if it is strictly more damaging.

    Why greedy: a bilevel search would differentiate the post-unlearning loss through the
    unlearning procedure, which is not differentiable for several registered methods (Fisher
    noise, influence steps with clipping, retraining) and costs the unrolled optimisation per
    step; the greedy search treats the method as a black box at ``1 + rounds·mutants`` cheap
    proxy runs per pool strategy.
    """
    if not method:
        raise ConfigError("adaptive: option 'method' (a registered unlearning method) is required")
    if rounds < 1 or mutants < 0 or not 0.0 < swap_fraction <= 1.0:
        raise ConfigError(
            f"adaptive: need rounds >= 1, mutants >= 0 and 0 < swap_fraction <= 1; got "
            f"rounds={rounds}, mutants={mutants}, swap_fraction={swap_fraction}"
        )
    if "adaptive" in pool:
        raise ConfigError("adaptive: its pool cannot contain 'adaptive' itself")
    eval_ids, ref_name = _reference_ids(ctx.split, reference, proxy_eval, ctx.seed + 3)
    xe, ye = ctx.dataset.tensors(eval_ids)
    base = _acc_loss(ctx.model, xe, ye, ctx.device)

    def damage(ids: Tensor) -> tuple[float, float]:
        return proxy_damage(
            ctx.model,
            ctx.dataset,
            ctx.split,
            ids,
            method=method,
            method_options=method_options,
            proxy_steps=proxy_steps,
            proxy_retain=proxy_retain,
            eval_ids=eval_ids,
            seed=ctx.seed,
            train_config=train_config,
            device=ctx.device,
            base=base,
        )

    tried: list[dict[str, Any]] = []
    seeds: dict[str, Tensor] = {}
    for name in pool:
        ids, _, _ = REQUEST_STRATEGIES.get(name)(ctx)
        seeds[name] = torch.sort(ids).values
        d, dl = damage(seeds[name])
        tried.append({"candidate": name, "damage": d, "loss_increase": dl})
    best_i = max(
        range(len(tried)), key=lambda i: (tried[i]["damage"], tried[i]["loss_increase"], -i)
    )
    best_name = tried[best_i]["candidate"]
    best = seeds[best_name]
    best_key = (tried[best_i]["damage"], tried[best_i]["loss_increase"])
    rng = ctx.rng(4)
    for r in range(1, rounds):
        for m in range(mutants):
            others = torch.unique(torch.cat([v for n, v in seeds.items() if n != best_name]))
            donors = others[~torch.isin(others, best)]
            if len(donors) == 0:
                donors = ctx.candidates[~torch.isin(ctx.candidates, best)]
            n_swap = min(max(1, int(round(swap_fraction * ctx.k))), len(donors))
            if n_swap == 0:
                break
            out_pos = rng.choice(ctx.k, n_swap, replace=False)
            in_pos = rng.choice(len(donors), n_swap, replace=False)
            keep = torch.ones(ctx.k, dtype=torch.bool)
            keep[torch.from_numpy(out_pos)] = False
            cand = torch.sort(torch.cat([best[keep], donors[torch.from_numpy(in_pos)]])).values
            d, dl = damage(cand)
            tried.append({"candidate": f"round{r}-mutant{m}", "damage": d, "loss_increase": dl})
            if (d, dl) > best_key:
                best, best_key, best_name = cand, (d, dl), f"round{r}-mutant{m}"
    details = {
        "search": "greedy",
        "method": method,
        "proxy": "finetune"
        if {"exact", "needs_ensemble"} & set(_tags(method))
        else f"{method} (max_steps<={proxy_steps})",
        "proxy_retain": proxy_retain,
        "eval": ref_name,
        "n_eval": len(eval_ids),
        "base_acc": base[0],
        "base_loss": base[1],
        "best": best_name,
        "candidates": tried,
    }
    return best, float(best_key[0]), details


def _tags(method: str) -> frozenset[str]:
    return UNLEARNERS.get(method).tags
