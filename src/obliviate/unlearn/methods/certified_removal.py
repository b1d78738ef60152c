"""``certified_removal``: certified data removal for a linear head on frozen features (Guo,
Goldstein, Hannun & van der Maaten, ICML 2020).

The model's final ``nn.Linear`` is treated as an L2-regularised logistic regression on the
model's penultimate features ``x̃ = [features(x), 1]`` (the bias is a regularised feature, so the
Hessian is positive definite). Guo et al.'s sum-form objective on data D::

    L(w; D) = Σ_{i∈D} ℓ(w, x̃_i, y_i) + (λ|D|/2)·‖w‖² + bᵀw        b ~ N(0, σ² I)

(the mean-form ``λ`` of ``mean ℓ + λ/2‖w‖²``). Removing the forget set is one Newton step on the
remaining data D' = retain::

    w⁻ = w − H⁻¹ ∇L(w; D'),   H = ∇²L(w; D') = Σ_{D'} ∇²ℓ + λ|D'| I

At the optimum w* of L(·; D), ``−∇L(w*; D') = Δ = λ m w* + Σ_{removed} ∇ℓ`` — Guo's formula; we
compute the gradient on D' directly, which is identical there and keeps the step an exact Newton
step (and the bound below valid) when w is only near the optimum. Only the head changes; the
backbone is untouched (bitwise).

Loss (``loss``): ``"multinomial"`` (default) — softmax cross-entropy, the loss the head was
trained with, so the re-fit changes the model least and its logits keep their meaning;
``"ova"`` — one-vs-all binary logistic regressions (one per class, ``y = ±1``), as the official
code (``facebookresearch/certified-removal``, ``test_removal.py``) does for multi-class data;
the head's rows become the binary classifiers' weights.

Certificate. Guo et al. bound the residual gradient ``‖∇L(w⁻; D')‖ = ‖(H_η − H)H⁻¹Δ‖``; their
data-dependent bound (Cor. 1; official code ``‖δ‖·‖Xδ‖·‖X‖₂/4``, δ the step) assumes
``‖x_i‖ ≤ 1``. Our features are not normalised, so we report the same bound with
``‖δ‖·max_i‖x_i‖`` replaced by ``max_i |x̃_iᵀδ|`` (valid for any feature norms, equal or
tighter otherwise): ``γ·‖X̃‖₂·‖X̃δ‖_∞·‖X̃δ‖₂`` per binary problem (γ = 1/4, Guo's constant;
combined over the C one-vs-all problems in quadrature), and for the multinomial loss
``L_A·‖X̃‖₂·max_i‖u_i‖·‖U‖_F`` with ``U = X̃Δᵀ`` the logit changes and ``L_A = 3/2`` a
Lipschitz constant of the softmax Jacobian ``diag(p) − ppᵀ``. Over several removal batches the
bounds add up (as in the official code). ``grad_residual_norm`` is the actual
``‖∇L(w⁻; D')‖`` (≤ the bound). With ``sigma > 0`` the re-fit minimises the perturbed objective
and ``epsilon = c·bound/σ``, ``c = √(2 log(1.5/δ))`` (Guo et al. Thm. 3) is reported: the removal
is (ε, δ)-certified.

Re-fit (``refit``, default on): the certificate holds only at the optimum of the regularised
(perturbed) objective, but a head trained with plain cross-entropy by SGD is not at it. So by
default the head is first re-fitted (L-BFGS, then Newton's method), from its current weights,
to the optimum of L(·; D) on the full training set D = retain ∪ forget — this stands for "the
model was trained with Guo's objective"; the re-fit's own change (``refit_change``) is reported, and
``refit_grad_norm`` says how close to the optimum it got. ``refit=False`` takes the Newton step
from the trained head as it is: the step then also pulls the head to the regularised optimum, the
bound is large, and no certificate is claimed.

Stats: ``grad_residual_bound`` and ``grad_residual_norm`` (sum form, as in Guo et al.),
``epsilon``/``delta`` (when ``sigma > 0``), ``refit_change`` and ``head_change`` (norms of the
change of [W, b] by the re-fit / in total), ``update_norm`` (the removal step(s)),
``start_grad_norm`` (= ``refit_grad_norm`` after a re-fit: ``‖∇L(w; D)‖/n`` where the removal
starts; 0 at the exact optimum), ``refit_newton_iters`` and ``newton_steps``. Cost: one
(C(D+1))² Hessian (multinomial) or C Hessians of (D+1)² (ova) per Newton iteration, in float64.
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
from obliviate.unlearn._second_order import checked_head
from obliviate.unlearn.base import Unlearner, register_unlearner
from obliviate.unlearn.space import FloatRange, SearchSpace
from obliviate.unlearn.task import UnlearnTask
from obliviate.utils import resolve_device

#: Lipschitz constant of ``diag(p) − ppᵀ`` in the logits (spectral norm), and Guo's γ.
L_SOFTMAX = 1.5
GAMMA_LOGISTIC = 0.25
#: Largest C·(D+1) for which the multinomial Hessian is formed (float64, ≈ 540 MB at 8192).
MAX_MULTINOMIAL_DIM = 8192


@dataclass
class CertifiedRemovalConfig:
    loss: Literal["multinomial", "ova"] = opt(
        "multinomial",
        "Head objective: multinomial (softmax cross-entropy, as the head was trained) or ova "
        "(one-vs-all binary logistic regressions, as the official code).",
    )
    lam: float = opt(
        1e-3,
        "L2 coefficient λ (mean form: mean ℓ + λ/2‖w‖²; Guo's sum form uses λn). Larger: a "
        "smaller bound, a head further from the trained one.",
        gt=0,
    )
    refit: bool = opt(
        True,
        "First re-fit the head to the optimum of the regularised (perturbed) objective on the "
        "full training set (the certificate holds only there).",
    )
    refit_iters: int = opt(
        20,
        "Re-fit: maximum Newton iterations (after up to 10× as many L-BFGS iterations).",
        ge=0,
        le=STEPS_MAX,
    )
    refit_tol: float = opt(
        1e-9, "Re-fit: stop when the mean-form gradient norm ‖∇L‖/n falls below this.", ge=0
    )
    sigma: float = opt(
        0.0,
        "Objective perturbation: std of b in bᵀw (sum form), drawn from the task seed; > 0 "
        "makes the removal (ε, δ)-certified with ε = c·bound/σ (needs refit).",
        ge=0,
    )
    delta: float = opt(1e-4, "δ of the (ε, δ) certificate reported when sigma > 0.", gt=0, lt=1)
    removal_batch_size: int = opt(
        0,
        "Remove the forget set in batches of this size, one Newton step each, bounds added "
        "(the official code removes one point per step); 0: one step for the whole request.",
        ge=0,
    )

    def __post_init__(self) -> None:
        validate_config(self)


@register_unlearner(
    "certified_removal",
    tags={"needs_retain"},
    paper="Guo, Goldstein, Hannun & van der Maaten, ICML 2020",
)
class CertifiedRemoval(Unlearner):
    """Certified removal: one Newton step on an L2-regularised logistic-regression head.

    The head (final ``nn.Linear``) is re-fitted to the regularised optimum on the frozen
    penultimate features, then the forget set is removed by a Newton step whose gradient-residual
    bound is reported. Only the head changes. See the module docstring for the choices.
    """

    Config = CertifiedRemovalConfig
    search_space: ClassVar[SearchSpace] = {"lam": FloatRange(1e-4, 1e-2, log=True)}

    def _unlearn(self, model: nn.Module, task: UnlearnTask) -> dict[str, Any]:
        cfg: CertifiedRemovalConfig = self.config
        if cfg.lam <= 0:
            raise ConfigError(f"certified_removal: lam must be > 0, got {cfg.lam}")
        if cfg.sigma < 0 or not 0 < cfg.delta < 1 or cfg.removal_batch_size < 0:
            raise ConfigError("certified_removal: need sigma ≥ 0, 0 < delta < 1, batch size ≥ 0")
        if cfg.sigma > 0 and not cfg.refit:
            raise ConfigError(
                "certified_removal: sigma > 0 needs refit=True (the perturbation b must be part of "
                "the objective the head was trained on)"
            )
        dev = resolve_device(task.device)
        g = torch.Generator().manual_seed(task.seed)
        retain, forget = task.retain, task.forget
        head = checked_head(model, forget.x[:2].to(dev), "certified_removal")
        xr, xf = (
            _augment(batched_features(model, s.x, 512, dev, keep_device=True), head).cpu().double()
            for s in (retain, forget)
        )
        yr, yf = retain.y.cpu(), forget.y.cpu()
        c = head.out_features
        if int(torch.cat([yr, yf]).max()) >= c:
            raise ConfigError(f"certified_removal: labels exceed the head's {c} outputs")
        if cfg.loss == "multinomial" and c * xr.shape[1] > MAX_MULTINOMIAL_DIM:
            raise ConfigError(
                f"certified_removal: the multinomial Hessian would be {c * xr.shape[1]}² "
                f"(> {MAX_MULTINOMIAL_DIM}²); use loss='ova' (C Hessians of (D+1)²)"
            )
        prob = Problem(cfg.loss, cfg.lam)
        w0 = _read_head(head).cpu().double()
        b = torch.randn(w0.shape, generator=g, dtype=torch.float64) * cfg.sigma
        x_all, y_all = torch.cat([xr, xf]), torch.cat([yr, yf])

        stats: dict[str, Any] = {"loss": cfg.loss, "lam": cfg.lam, "n_forget": len(yf)}
        w = w0
        if cfg.refit:
            w, iters = prob.fit(w0, x_all, y_all, b, cfg.refit_iters, cfg.refit_tol)
            stats["refit_newton_iters"] = iters
            stats["refit_change"] = float((w - w0).norm())
        stats["start_grad_norm"] = float(prob.grad(w, x_all, y_all, b).norm()) / len(y_all)
        if cfg.refit:
            stats["refit_grad_norm"] = stats["start_grad_norm"]

        # remove: one Newton step per batch, on what remains after it
        order = torch.randperm(len(yf), generator=g)
        bs = cfg.removal_batch_size or len(yf)
        bound, w_start = 0.0, w
        for k in range(0, len(yf), bs):
            left = order[k + bs :]
            xs, ys = torch.cat([xr, xf[left]]), torch.cat([yr, yf[left]])
            step = -prob.solve(w, xs, ys, prob.grad(w, xs, ys, b))
            bound += prob.residual_bound(step, xs)
            w = w + step
        residual = float(prob.grad(w, xr, yr, b).norm())
        stats.update(
            newton_steps=math.ceil(len(yf) / bs),
            grad_residual_bound=bound,
            grad_residual_norm=residual,
            update_norm=float((w - w_start).norm()),
            head_change=float((w - w0).norm()),
        )
        if cfg.sigma > 0:
            stats["epsilon"] = math.sqrt(2 * math.log(1.5 / cfg.delta)) * bound / cfg.sigma
            stats["delta"] = cfg.delta
        _write_head(head, w)
        return stats


def _augment(x: Tensor, head: nn.Linear) -> Tensor:
    return (
        torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype, device=x.device)], 1)
        if (head.bias is not None)
        else x
    )


def _read_head(head: nn.Linear) -> Tensor:
    w = head.weight.detach()
    return torch.cat([w, head.bias.detach()[:, None]], 1) if head.bias is not None else w.clone()


def _write_head(head: nn.Linear, w: Tensor) -> None:
    with torch.no_grad():
        d = head.in_features
        head.weight.copy_(w[:, :d].to(head.weight))
        if head.bias is not None:
            head.bias.copy_(w[:, d].to(head.bias))


class Problem:
    """The sum-form regularised objective of the head, ``w`` of shape (C, d) (float64)."""

    def __init__(self, loss: str, lam: float) -> None:
        self.loss, self.lam = loss, lam

    # --- gradient and Hessian --------------------------------------------------------------
    def _resid(self, w: Tensor, x: Tensor, y: Tensor) -> Tensor:
        """∂(Σℓ)/∂logits, shape (n, C)."""
        z = x @ w.T
        if self.loss == "multinomial":
            return z.softmax(1) - F.one_hot(y, w.shape[0]).double()
        s = 2.0 * F.one_hot(y, w.shape[0]).double() - 1.0
        return -s * torch.sigmoid(-s * z)

    def value(self, w: Tensor, x: Tensor, y: Tensor, b: Tensor) -> float:
        z = x @ w.T
        if self.loss == "multinomial":
            loss = F.cross_entropy(z, y, reduction="sum")
        else:
            s = 2.0 * F.one_hot(y, w.shape[0]).double() - 1.0
            loss = F.softplus(-s * z).sum()
        return float(loss + self.lam * len(y) / 2 * w.pow(2).sum() + (b * w).sum())

    def grad(self, w: Tensor, x: Tensor, y: Tensor, b: Tensor) -> Tensor:
        return self._resid(w, x, y).T @ x + self.lam * len(y) * w + b

    def solve(self, w: Tensor, x: Tensor, y: Tensor, rhs: Tensor) -> Tensor:
        """``H(w; x, y)⁻¹ rhs`` (H the sum-form Hessian, PD thanks to λ), by Cholesky."""
        c, d = w.shape
        z = x @ w.T
        reg = self.lam * len(y)
        if self.loss == "ova":
            s = torch.sigmoid(z)
            curv = s * (1 - s)  # (n, C)
            out = torch.empty_like(rhs)
            for k in range(c):
                h = (x * curv[:, k : k + 1]).T @ x
                h.diagonal().add_(reg)
                out[k] = torch.cholesky_solve(rhs[k : k + 1].T, torch.linalg.cholesky(h))[:, 0]
            return out
        p = z.softmax(1)
        h = torch.zeros(c, d, c, d, dtype=x.dtype)
        for k in range(c):  # diag(p) part: block (k, k) = Xᵀ diag(p_k) X
            h[k, :, k, :] = (x * p[:, k : k + 1]).T @ x
        zz = (p[:, :, None] * x[:, None, :]).reshape(len(x), c * d)  # rows p_i ⊗ x_i
        h = h.reshape(c * d, c * d) - zz.T @ zz
        h.diagonal().add_(reg)
        sol = torch.cholesky_solve(rhs.reshape(-1, 1), torch.linalg.cholesky(h))
        return sol.reshape(c, d)

    def fit(
        self, w: Tensor, x: Tensor, y: Tensor, b: Tensor, iters: int, tol: float
    ) -> tuple[Tensor, int]:
        """Minimise L(·; x, y) from ``w``: L-BFGS (cheap iterations, no Hessian), then Newton's
        method with backtracking until ``‖∇L‖/n ≤ tol`` (quadratic convergence at the end).
        Returns the optimum and the number of Newton iterations (Hessians formed)."""
        n = len(y)
        w = w.clone().requires_grad_(True)
        lbfgs = torch.optim.LBFGS(
            [w],
            lr=1.0,
            max_iter=max(1, 10 * iters),
            tolerance_grad=max(tol, 1e-6) * n,  # Newton polishes the rest
            tolerance_change=0.0,
            history_size=20,
            line_search_fn="strong_wolfe",
        )

        def closure() -> Tensor:
            lbfgs.zero_grad()
            with torch.no_grad():
                w.grad = self.grad(w, x, y, b)
            return torch.as_tensor(self.value(w.detach(), x, y, b), dtype=torch.float64)

        lbfgs.step(closure)
        w = w.detach()
        f = self.value(w, x, y, b)
        for it in range(1, iters + 1):
            gr = self.grad(w, x, y, b)
            if float(gr.norm()) / n <= tol:
                return w, it - 1
            step = -self.solve(w, x, y, gr)
            slope = float((gr * step).sum())
            t = 1.0
            while True:
                w_new = w + t * step
                f_new = self.value(w_new, x, y, b)
                if f_new <= f + 1e-4 * t * slope or t < 1e-10:
                    break
                t *= 0.5
            w, f = w_new, f_new
        return w, iters

    # --- certificate --------------------------------------------------------------------------
    def residual_bound(self, step: Tensor, x: Tensor) -> float:
        """Data-dependent bound on ‖∇L(w + step; D')‖ after an exact Newton step (see module)."""
        xnorm = float(torch.linalg.matrix_norm(x, ord=2))
        u = x @ step.T  # (n, C): change of every logit
        if self.loss == "ova":
            per_class = GAMMA_LOGISTIC * xnorm * u.abs().amax(0) * u.norm(dim=0)
            return float(per_class.norm())
        return L_SOFTMAX * xnorm * float(u.norm(dim=1).max()) * float(u.norm())
