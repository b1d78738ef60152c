"""``influence``: influence-function removal (Koh & Liang, ICML 2017).

Removing the points ``z ∈ forget`` from the empirical risk moves the optimum by (one Newton step
on the remaining objective, which is Koh & Liang's up-weighting with ε = −1/n)::

    θ ← θ + (1/n_r) · (H_r + λI)⁻¹ · Σ_{z ∈ forget} ∇ℓ(z, θ)

with ``H_r`` the Hessian of the mean retain loss and ``n_r`` the number of retain points (at a
minimum of the full objective, ``−Σ_forget ∇ℓ / n_r`` is exactly the gradient of the retain
objective). The inverse-Hessian-vector product comes from Hessian-vector products (double
back-propagation on retain mini-batches) by conjugate gradients (``solver="cg"``, on a fixed
seeded subsample of ``hessian_samples`` retain points) or LiSSA (``solver="lissa"``: depth, scale,
damping, repeats; a fresh random mini-batch per step). The update is clipped to ``max_norm``.
If the model was trained with an L2 penalty (``weight_decay``), pass it as ``l2``: as in Koh &
Liang, where the regulariser is part of every ``L(z, θ)``, each removed point then also
contributes ``l2·θ`` and the Hessian gains ``l2·I``.

Deviation from Koh & Liang: we normalise by ``n_r`` (the Hessian is the *retain* one), not by
the full ``n`` with the full-data Hessian; the two agree to first order.

``recipe="healing"`` is the recipe of the healing paper's code (``Jsrsky/machine_unlearning_
experiments``, ``methods/influence/influence_utils.py``): the forget set is split into deletion
mini-batches; for each, ``θ ← θ + clip((H + λI)⁻¹ · mean ∇ℓ(batch))`` — the *mean* gradient with
no ``1/n`` scaling, so every batch moves θ by up to ``max_norm``. It is kept for reproducing that
paper: it is the recipe that collapses accuracy (its notebooks report MNIST 0.99 → 0.94 and
CIFAR-10 0.95 → 0.51 after 30 % random deletion; here, digits with small_cnn and 10 % random
deletion, test accuracy falls from 98 % to 88 % with CG and to 39 % with LiSSA), which healing
then repairs. Its code uses LiSSA (set ``solver="lissa"``; the divergence check is off for this
recipe, as there) and a Hessian on D minus the current batch; ours is always the retain set's.

Stats: ``update_norm`` (total change of θ), ``raw_step_norm_max`` (largest step before
clipping), ``clipped_steps``, ``scaled_grad_norm_max`` (norm of the right-hand side), and the
solver's diagnostics (``cg_iters``, ``cg_rel_residual``, ``cg_neg`` = 1 if CG met negative
curvature; ``lissa_scale``, ``hvps``, ``lissa_rel_residual`` on the fixed subsample).

``params``: ``"head"`` (default) treats only the final ``nn.Linear`` as free (features frozen and
computed once): the Hessian is then that of a multinomial logistic regression — positive
semi-definite, so CG and LiSSA converge and the step is a true (damped) Newton step — and the
whole removal takes well under a second on small_cnn on CPU. ``"all"`` uses every trainable
parameter, as Koh & Liang and the healing code do; the Hessian of a ReLU net is indefinite, so
CG stops at the first negative-curvature direction (reported) and LiSSA needs ``lissa_scale``
above the largest eigenvalue (``lissa_scale=0`` estimates it by power iteration).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from obliviate.config import STEPS_MAX, opt, validate_config
from obliviate.errors import ConfigError
from obliviate.inference import batched_features
from obliviate.unlearn._second_order import (
    add_,
    checked_head,
    conjugate_gradient,
    flat,
    full_hvp,
    grad_sum,
    hvp,
    lissa,
)
from obliviate.unlearn.base import Unlearner, register_unlearner
from obliviate.unlearn.space import FloatRange, SearchSpace
from obliviate.unlearn.task import UnlearnTask
from obliviate.utils import resolve_device


@dataclass
class InfluenceConfig:
    recipe: Literal["scaled", "healing"] = opt(
        "scaled",
        "scaled: θ + (1/n_r)(H + λI)⁻¹ Σ_forget ∇ℓ, one step (Koh & Liang); healing: the healing "
        "paper's unscaled, clipped step per deletion mini-batch (collapses accuracy).",
    )
    params: Literal["head", "all"] = opt(
        "head",
        "Parameters treated as free: head = the final nn.Linear on frozen features (convex, fast); "
        "all = every trainable parameter (Koh & Liang; indefinite Hessian).",
    )
    solver: Literal["cg", "lissa"] = opt(
        "cg", "Inverse-HVP solver: conjugate gradients on a fixed subsample, or LiSSA."
    )
    damping: float = opt(
        1e-3,
        "λ added to the Hessian (H + λI); keeps the solve well posed. Absolute, not scaled.",
        ge=0,
    )
    l2: float = opt(
        0.0,
        "L2 coefficient of the training objective (e.g. its weight_decay): added to every removed "
        "point's loss (gradient l2·θ) and to the Hessian.",
        ge=0,
    )
    max_norm: float = opt(
        5.0,
        "Clip the L2 norm of each update to this value (0: no clip; the healing code uses 1-10).",
        ge=0,
    )
    hessian_samples: int = opt(
        2048,
        "Retain points (seeded subsample) of the CG Hessian and LiSSA's residual check (0: all).",
        ge=0,
    )
    cg_iters: int = opt(200, "CG: maximum iterations.", ge=1, le=STEPS_MAX)
    cg_tol: float = opt(1e-5, "CG: stop at relative residual |Hx − v| ≤ cg_tol·|v|.", ge=0)
    lissa_depth: int = opt(
        500,
        "LiSSA: recursion depth (the healing code: 10 on MNIST, 1000-5000 in Model-Healing).",
        ge=1,
        le=STEPS_MAX,
    )
    lissa_scale: float = opt(
        0.0,
        "LiSSA: scale, must exceed the largest Hessian eigenvalue (0: 2× a power-iteration "
        "estimate on one mini-batch; the healing code: 10 on MNIST, 1e3-1e4 in Model-Healing).",
        ge=0,
    )
    lissa_repeats: int = opt(1, "LiSSA: independent runs averaged.", ge=1)
    lissa_restarts: int = opt(
        3,
        "LiSSA with the estimated scale (lissa_scale=0): when the recursion blows up (another "
        "mini-batch's Hessian has a larger eigenvalue than the one estimated), double the scale "
        "and restart, at most this many times; a fixed lissa_scale never restarts.",
        ge=0,
    )
    batch_size: int = opt(
        128, "Mini-batch size of the Hessian-vector products and gradients.", ge=1
    )
    deletion_batch_size: int = opt(
        25, "healing: forget points per deletion mini-batch (the healing code: 25 or 1024).", ge=1
    )

    def __post_init__(self) -> None:
        validate_config(self)


@register_unlearner(
    "influence",
    tags={"needs_retain"},
    paper="Koh & Liang, ICML 2017 (healing recipe: Jasiorski et al. 2025)",
)
class Influence(Unlearner):
    """Influence-function removal: a damped Newton step towards the retain-set optimum.

    ``θ + (1/n_r)(H_r + λI)⁻¹ Σ_forget ∇ℓ`` with CG or LiSSA inverse-HVPs and step clipping;
    ``recipe="healing"`` reproduces the healing paper's unscaled per-deletion-batch recipe.
    See the module docstring for the choices and deviations.
    """

    Config = InfluenceConfig
    search_space: ClassVar[SearchSpace] = {
        "damping": FloatRange(1e-3, 1e-1, log=True),
        "max_norm": FloatRange(1.0, 20.0, log=True),
    }

    def _unlearn(self, model: nn.Module, task: UnlearnTask) -> dict[str, Any]:
        cfg: InfluenceConfig = self.config
        self._check(cfg)
        dev = resolve_device(task.device)
        g = torch.Generator().manual_seed(task.seed)
        retain, forget = task.retain, task.forget
        model.eval()
        if cfg.params == "head":
            head = checked_head(model, forget.x[:2].to(dev), "influence")
            params = [p for p in head.parameters() if p.requires_grad]
            xr, xf = (
                batched_features(model, s.x, 512, dev, keep_device=True) for s in (retain, forget)
            )

            def loss_fn(xb: Tensor, yb: Tensor) -> Tensor:
                return F.cross_entropy(head(xb), yb)

        else:
            params = [p for p in model.parameters() if p.requires_grad]
            xr, xf = retain.x, forget.x

            def loss_fn(xb: Tensor, yb: Tensor) -> Tensor:
                return F.cross_entropy(model(xb), yb)

        if not params:
            raise ConfigError("influence: the model has no trainable parameters to update")
        yr, yf = retain.y, forget.y
        lam = cfg.damping + cfg.l2
        n_r = len(yr)

        sub = torch.arange(n_r)
        if 0 < cfg.hessian_samples < n_r:
            sub = torch.randperm(n_r, generator=g)[: cfg.hessian_samples]
        xs, ys = xr[sub], yr[sub]
        fixed_hv = full_hvp(loss_fn, params, xs, ys, dev, cfg.batch_size * 4)

        def batch_hvp(v: Tensor, gen: torch.Generator) -> Tensor:
            i = torch.randint(n_r, (min(cfg.batch_size, n_r),), generator=gen)
            return hvp(loss_fn, params, xr[i].to(dev), yr[i].to(dev), v)

        scale = cfg.lissa_scale
        if cfg.solver == "lissa" and scale <= 0:
            scale = 2.0 * _top_eigenvalue(batch_hvp, params, g) + lam
        restarts = 0

        def solve(v: Tensor) -> tuple[Tensor, dict[str, float]]:
            nonlocal scale, restarts
            if cfg.solver == "cg":
                return conjugate_gradient(
                    lambda u: fixed_hv(u) + lam * u, v, iters=cfg.cg_iters, tol=cfg.cg_tol
                )
            while True:
                try:
                    h, info = lissa(
                        batch_hvp,
                        v,
                        damping=lam,
                        scale=scale,
                        depth=cfg.lissa_depth,
                        repeats=cfg.lissa_repeats,
                        generator=g,
                        strict=cfg.recipe == "scaled",
                    )
                    break
                except FloatingPointError:
                    # the power-iteration estimate saw one mini-batch; LiSSA needs the scale
                    # above every mini-batch's top eigenvalue (Agarwal et al. 2017)
                    if cfg.lissa_scale > 0 or restarts >= cfg.lissa_restarts:
                        raise
                    scale, restarts = 2.0 * scale, restarts + 1
            r = fixed_hv(h) + lam * h - v
            return h, {**info, "lissa_rel_residual": float(r.norm() / v.norm().clamp_min(1e-30))}

        theta0 = flat([p.detach() for p in params]).clone()
        if cfg.recipe == "scaled":
            batches = [torch.arange(len(yf))]
        else:
            perm = torch.randperm(len(yf), generator=g)
            batches = list(perm.split(cfg.deletion_batch_size))
        steps, clipped, raw_norms, grad_norms, infos = 0, 0, [], [], []
        for b in batches:
            theta = flat([p.detach() for p in params])
            gsum = grad_sum(loss_fn, params, xf[b], yf[b], dev, cfg.batch_size)
            gsum = gsum + cfg.l2 * len(b) * theta
            v = gsum / (n_r if cfg.recipe == "scaled" else len(b))
            grad_norms.append(float(v.norm()))
            h, info = solve(v)
            infos.append(info)
            hn = float(h.norm())
            if not math.isfinite(hn):
                raise FloatingPointError("influence: the inverse-HVP is not finite")
            raw_norms.append(hn)
            if cfg.max_norm > 0 and hn > cfg.max_norm:
                h = h * (cfg.max_norm / hn)
                clipped += 1
            add_(params, h)
            steps += 1
        upd = flat([p.detach() for p in params]) - theta0
        stats: dict[str, Any] = {
            "recipe": cfg.recipe,
            "params": cfg.params,
            "solver": cfg.solver,
            "n_params": int(theta0.numel()),
            "n_forget": len(yf),
            "n_retain": n_r,
            "steps": steps,
            "clipped_steps": clipped,
            "update_norm": float(upd.norm()),
            "raw_step_norm_max": max(raw_norms),
            "scaled_grad_norm_max": max(grad_norms),
        }
        if cfg.solver == "lissa":
            stats["lissa_scale"] = scale
            stats["lissa_restarts"] = restarts
        for key in infos[0]:
            stats[key] = max(i[key] for i in infos)
        return stats

    @staticmethod
    def _check(cfg: InfluenceConfig) -> None:
        for name in ("damping", "l2", "max_norm", "cg_tol", "lissa_scale"):
            if getattr(cfg, name) < 0:
                raise ConfigError(f"influence: {name} must be ≥ 0, got {getattr(cfg, name)}")
        if cfg.lissa_restarts < 0:
            raise ConfigError(f"influence: lissa_restarts must be ≥ 0, got {cfg.lissa_restarts}")
        for name in ("cg_iters", "lissa_depth", "lissa_repeats", "batch_size"):
            if getattr(cfg, name) < 1:
                raise ConfigError(f"influence: {name} must be ≥ 1, got {getattr(cfg, name)}")
        if cfg.deletion_batch_size < 1 or cfg.hessian_samples < 0:
            raise ConfigError("influence: deletion_batch_size ≥ 1 and hessian_samples ≥ 0 needed")


def _top_eigenvalue(batch_hvp, params, g: torch.Generator, iters: int = 20) -> float:
    """Largest |eigenvalue| of one mini-batch Hessian by power iteration."""
    v = torch.randn(sum(p.numel() for p in params), generator=g).to(params[0].device)
    v /= v.norm()
    gen = torch.Generator().manual_seed(int(torch.randint(2**31, (1,), generator=g)))
    state = gen.get_state()
    lam = 0.0
    for _ in range(iters):
        gen.set_state(state)  # the same mini-batch every iteration
        hv = batch_hvp(v, gen)
        lam = float(hv.norm())
        if lam == 0:
            break
        v = hv / lam
    return lam
