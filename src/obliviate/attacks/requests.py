"""Adversarial deletion requests: choose the training samples whose unlearning hurts most.

Threat model (Jasiorski, Klonowski & Woźniak, "How to Protect Models against Adversarial
Unlearning?", arXiv 2507.10886; papers.md §3.4): an adversary may only *ask* for samples to be
deleted — within a budget (k samples or a fraction of the training split) and optional
constraints (one class, a set of classes it may own, the ids it controls). Its objective is the
largest drop in test accuracy after the owner's (approximate) unlearning method honours the
request. The healing paper's code compares ``random``, class-targeted random and
lowest-true-class-logit requests; this module adds loss-, gradient- and influence-based scores
and an ``adaptive`` search against a proxy of the target method.

Every strategy is registered in :data:`REQUEST_STRATEGIES` and called through
:func:`select_request`, which guarantees: the request holds exactly ``k`` distinct ids, all of
``split.train`` (never reserve / test / val), all inside the constraints; the same inputs and
seed give the same request. Scores rank samples in descending order with ties broken by the
smaller id, so selection never depends on the order of the split.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from obliviate.data.dataset import ImageDataset, _fmt_ids
from obliviate.data.request import ForgetRequest
from obliviate.data.split import Split
from obliviate.errors import ConfigError, ObliviateError, RequestError
from obliviate.inference import batched_logits
from obliviate.metrics._common import features
from obliviate.registry import Registry
from obliviate.unlearn import UNLEARNERS, TensorSet, UnlearnTask, create_unlearner
from obliviate.unlearn._second_order import checked_head, conjugate_gradient
from obliviate.utils import resolve_device

#: name → strategy ``fn(ctx: SelectionContext, **options) -> (ids, score, details)``.
#: Metadata: ``description``, ``objective`` (what ``score`` measures).
REQUEST_STRATEGIES: Registry[Callable[..., tuple[Tensor, float, dict[str, Any]]]] = Registry(
    "request strategy"
)


@dataclass
class RequestSelection:
    """A chosen request, the strategy that chose it and the value it optimised.

    ``score`` is higher for a request expected to be more damaging; its unit depends on the
    strategy (``REQUEST_STRATEGIES.meta(name)["objective"]``). ``random`` and ``class`` optimise
    nothing: their score is NaN (``None`` in :meth:`to_dict`).
    """

    request: ForgetRequest
    strategy: str
    score: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "request": self.request.to_dict(),
            "strategy": self.strategy,
            "score": None if math.isnan(self.score) else self.score,
            "objective": REQUEST_STRATEGIES.meta(self.strategy).get("objective", ""),
            "details": self.details,
        }


@dataclass
class SelectionContext:
    """What a strategy sees: the allowed candidate ids (sorted) and the request size ``k``."""

    model: nn.Module
    dataset: ImageDataset
    split: Split
    candidates: Tensor
    k: int
    seed: int
    device: torch.device
    classes: list[int] | None = None
    controlled_ids: Tensor | None = None

    def tensors(self, ids: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.dataset.tensors(self.candidates if ids is None else ids)

    def rng(self, salt: int = 0) -> np.random.Generator:
        return np.random.default_rng([int(self.seed), int(salt)])


# ------------------------------------------------------------------------------ budget & checks


def resolve_budget(budget: int | float, n_train: int) -> int:
    """Request size: an int ``k >= 1`` or a fraction in (0, 1) of the ``n_train`` training
    samples (rounded, at least 1). Anything else raises :class:`ConfigError` naming ``budget``."""
    if isinstance(budget, bool) or not isinstance(budget, int | float | np.integer | np.floating):
        raise ConfigError(f"budget must be a count or a fraction in (0, 1), got {budget!r}")
    if isinstance(budget, float | np.floating):
        b = float(budget)
        if 0.0 < b < 1.0:
            return max(1, int(round(b * n_train)))
        if not b.is_integer():
            raise ConfigError(f"budget: a fraction must lie in (0, 1), got {b}")
        budget = int(b)
    k = int(budget)
    if k < 1:
        raise ConfigError(f"budget must be >= 1 sample, got {k}")
    return k


def candidate_ids(
    dataset: ImageDataset,
    split: Split,
    *,
    classes: Sequence[int] | None = None,
    controlled_ids: Sequence[int] | Tensor | None = None,
    exclude_classes: Sequence[int] = (),
) -> Tensor:
    """Sorted training ids allowed by the constraints: in ``split.train``, among
    ``controlled_ids`` (if given), with a label in ``classes`` (if given) and not in
    ``exclude_classes``. Bad classes raise :class:`ConfigError`; controlled ids outside the
    training split raise :class:`RequestError` naming them."""
    split.check(dataset)
    cand = torch.sort(split.train).values
    for what, cs in (("classes", classes), ("exclude_classes", exclude_classes)):
        if cs is None:
            continue
        bad = [c for c in cs if isinstance(c, bool) or not 0 <= int(c) < dataset.num_classes]
        if bad:
            raise ConfigError(
                f"{what}: {bad} are not class indices of dataset {dataset.name!r} "
                f"(0..{dataset.num_classes - 1})"
            )
    if classes is not None and len(classes) == 0:
        raise ConfigError("classes: an empty list allows no sample; pass None for no constraint")
    if controlled_ids is not None:
        ctrl = torch.as_tensor(controlled_ids, dtype=torch.int64).reshape(-1)
        if ctrl.numel() == 0:
            raise RequestError("controlled_ids is empty: the attacker controls no sample")
        outside = ctrl[~torch.isin(ctrl, split.train)]
        if outside.numel():
            raise RequestError(
                f"controlled_ids outside the training split: {_fmt_ids(outside.tolist())}"
            )
        cand = cand[torch.isin(cand, ctrl)]
    labels = dataset.labels_of(cand)
    keep = torch.ones(len(cand), dtype=torch.bool)
    if classes is not None:
        keep &= torch.isin(labels, torch.as_tensor([int(c) for c in classes]))
    if exclude_classes:
        keep &= ~torch.isin(labels, torch.as_tensor([int(c) for c in exclude_classes]))
    return cand[keep]


def top_k(ids: Tensor, scores: Tensor, k: int) -> Tensor:
    """The ``k`` ids with the highest scores; ties go to the smaller id (order-independent)."""
    s = scores.detach().double().cpu().numpy()
    if not np.all(np.isfinite(s)):
        raise ObliviateError("request scores contain NaN or inf; the model's outputs are invalid")
    order = np.lexsort((ids.cpu().numpy(), -s))
    return ids[torch.from_numpy(order[:k])]


# ---------------------------------------------------------------------------- per-sample scores


def _head_outputs(
    model: nn.Module, x: Tensor, device: torch.device
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(features h, logits, head weight W, head bias b) on the CPU, float64, eval mode.
    The logits are ``h Wᵀ + b``; :func:`checked_head` guarantees they are the model's output."""
    head = checked_head(model, x[:2].to(device), "request selection")
    h = features(model, x, device=device).double()
    w = head.weight.detach().double().cpu()
    b = (
        head.bias.detach().double().cpu()
        if head.bias is not None
        else torch.zeros(w.shape[0], dtype=torch.float64)
    )
    return h, h @ w.T + b, w, b


def sample_scores(
    kind: str,
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    device: str | torch.device = "cpu",
    params: str = "head",
    batch_size: int = 64,
) -> Tensor:
    """Per-sample damage scores (float64, CPU), higher = expected more damaging to remove.

    * ``"lowest_logit"``: ``−z_y(x)``, minus the true-class logit (the healing paper's code picks
      the lowest true-class logits: hard, atypical points).
    * ``"highest_loss"``: cross-entropy ``ℓ(x, y)``.
    * ``"gradient_norm"``: ``‖∇_θ ℓ(x, y)‖₂``. ``params="head"`` (default) is exact and in closed
      form for the final linear layer: ``‖p − e_y‖·√(‖h‖² + 1)`` (weight and bias); ``"all"``
      takes every trainable parameter (per-sample gradients with ``torch.func.vmap``).
    """
    dev = resolve_device(device)
    if kind in ("lowest_logit", "highest_loss"):
        z = batched_logits(model, x, device=dev).double()
        if kind == "lowest_logit":
            return -z.gather(1, y.view(-1, 1)).squeeze(1)
        return F.cross_entropy(z, y, reduction="none")
    if kind != "gradient_norm":
        raise ConfigError(
            f"sample score kind must be lowest_logit, highest_loss or gradient_norm, got {kind!r}"
        )
    if params == "head":
        h, z, _, _ = _head_outputs(model, x, dev)
        r = torch.softmax(z, 1) - F.one_hot(y, z.shape[1]).double()
        return r.norm(dim=1) * (h.pow(2).sum(1) + 1.0).sqrt()
    if params != "all":
        raise ConfigError(f"params must be 'head' or 'all', got {params!r}")
    return _full_grad_norms(model, x, y, dev, batch_size)


def _full_grad_norms(
    model: nn.Module, x: Tensor, y: Tensor, dev: torch.device, batch_size: int
) -> Tensor:
    """‖∇_θ ℓ(x_i, y_i)‖ over every trainable parameter, per sample, in eval mode (vmap)."""
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    if not params:
        raise ConfigError("gradient_norm: the model has no trainable parameters")
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def loss(p: dict[str, Tensor], xi: Tensor, yi: Tensor) -> Tensor:
        out = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(out, yi.unsqueeze(0))

    per = vmap(grad(loss), in_dims=(None, 0, 0))
    was = model.training
    model.eval()
    out = []
    try:
        for i in range(0, len(x), batch_size):
            g = per(params, x[i : i + batch_size].to(dev), y[i : i + batch_size].to(dev))
            sq = sum(v.flatten(1).double().pow(2).sum(1) for v in g.values())
            out.append(sq.sqrt().cpu())
    finally:
        model.train(was)
    return torch.cat(out)


def influence_scores(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    x_ref: Tensor,
    y_ref: Tensor,
    x_hess: Tensor,
    y_hess: Tensor,
    *,
    damping: float = 0.01,
    cg_iters: int = 100,
    device: str | torch.device = "cpu",
) -> tuple[Tensor, dict[str, float]]:
    """Influence of removing each (x, y) on the mean loss of the reference set (Koh & Liang,
    ICML 2017, Eq. 2 with ε = −1/n, up to the 1/n factor): ``s_refᵀ ∇ℓ(x, y)`` with
    ``s_ref = (H + λI)⁻¹ ∇L_ref``; positive = removing the sample raises the reference loss.

    Restricted to the final linear layer (as Koh & Liang do for their Inception experiments):
    there the gradient is ``(p − e_y) ⊗ [h, 1]`` and the Hessian-vector product of the
    multinomial logistic loss is exact and cheap, ``mean_n ((diag p_n − p_n p_nᵀ) V h̃_n) h̃_nᵀ``;
    the system is solved by conjugate gradients on ``(x_hess, y_hess)``. Returns the scores and
    CG diagnostics.
    """
    if damping < 0:
        raise ConfigError(f"damping must be >= 0, got {damping}")
    dev = resolve_device(device)

    def aug(h: Tensor) -> Tensor:
        return torch.cat([h, torch.ones(len(h), 1, dtype=h.dtype)], 1)

    h_ref, z_ref, w, _ = _head_outputs(model, x_ref, dev)
    c = w.shape[0]
    g_ref = ((torch.softmax(z_ref, 1) - F.one_hot(y_ref, c).double()).T @ aug(h_ref)) / len(y_ref)
    h_h, z_h, _, _ = _head_outputs(model, x_hess, dev)
    hh, p_h = aug(h_h), torch.softmax(z_h, 1)
    shape = g_ref.shape

    def hvp(v: Tensor) -> Tensor:
        u = hh @ v.view(shape).T  # (n, C): logit perturbation V h̃
        au = p_h * u - p_h * (p_h * u).sum(1, keepdim=True)  # (diag p − p pᵀ) u
        return ((au.T @ hh) / len(hh)).reshape(-1) + damping * v

    s, info = conjugate_gradient(hvp, g_ref.reshape(-1), iters=cg_iters, tol=1e-8)
    s = s.view(shape)
    h, z, _, _ = _head_outputs(model, x, dev)
    r = torch.softmax(z, 1) - F.one_hot(y, c).double()
    return ((r @ s) * aug(h)).sum(1), info


# --------------------------------------------------------------------------------- strategies


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


def _reference_ids(split: Split, reference: str, n_max: int, seed: int) -> tuple[Tensor, str]:
    """Held-out ids the attacker measures damage on: ``val`` (or ``test``; ``auto`` = val when
    the split has one), a seeded subsample of at most ``n_max``."""
    if reference == "auto":
        reference = "val" if len(split.val) else "test"
    if reference not in ("val", "test"):
        raise ConfigError(f"reference must be 'auto', 'val' or 'test', got {reference!r}")
    ids = getattr(split, reference)
    if len(ids) == 0:
        raise ConfigError(f"reference={reference!r}, but the split's {reference} part is empty")
    if n_max > 0 and len(ids) > n_max:
        g = torch.Generator().manual_seed(int(seed))
        ids = torch.sort(ids[torch.randperm(len(ids), generator=g)[:n_max]]).values
    return ids, reference


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


def _subsample(ids: Tensor, n_max: int, seed: int) -> tuple[Tensor, Tensor]:
    """(sorted subsample of at most ``n_max`` ids, their positions in ``ids``); 0 keeps all."""
    if n_max <= 0 or len(ids) <= n_max:
        return ids, torch.arange(len(ids))
    g = torch.Generator().manual_seed(int(seed))
    pos = torch.sort(torch.randperm(len(ids), generator=g)[:n_max]).values
    return ids[pos], pos


# ----------------------------------------------------------------------------------- adaptive

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
