"""Shared machinery of the second-order methods (``fisher``, ``influence``, ``certified_removal``).

* :func:`diag_fisher` — diagonal Fisher information of a classifier, per-sample exact
  (``torch.func``: ``functional_call`` + ``vmap`` + ``jacrev``/``grad``), with a plain autograd
  loop as the fallback for models ``vmap`` cannot trace.
* :func:`hvp` — Hessian-vector products by double back-propagation.
* :func:`lissa`, :func:`conjugate_gradient` — ``(H + λI)⁻¹ v`` from Hessian-vector products only.
* :func:`output_layer`, :func:`checked_head` — the final ``nn.Linear`` of any ``nn.Module``
  (its penultimate features come from :func:`obliviate.inference.batched_features`).

Vectors are flat tensors laid out like ``torch.cat([p.flatten() for p in params])``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from obliviate.errors import ConfigError
from obliviate.models import penultimate_features

#: Floats a chunk of per-sample gradients may hold (≈256 MB in float32).
_CHUNK_FLOATS = 2**26

NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)


# ------------------------------------------------------------------------------ flat vectors


def flat(tensors: Sequence[Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def unflat(v: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    out, i = [], 0
    for t in like:
        out.append(v[i : i + t.numel()].view_as(t))
        i += t.numel()
    return out


def add_(params: Sequence[Tensor], v: Tensor) -> None:
    """``params += v`` (flat ``v``), without autograd."""
    with torch.no_grad():
        for p, d in zip(params, unflat(v, params), strict=True):
            p.add_(d.to(p.dtype))


# ---------------------------------------------------------------------------- model anatomy


def output_layer(model: nn.Module) -> nn.Linear | None:
    """``model.head`` when it is an ``nn.Linear``, else the last ``nn.Linear`` registered."""
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear):
        return head
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m
    return last


def checked_head(model: nn.Module, probe: Tensor, who: str) -> nn.Linear:
    """The final ``nn.Linear`` of ``model``, checked to produce its logits from the penultimate
    features on ``probe`` inputs; :class:`ConfigError` when the model has no such layer."""
    head = output_layer(model)
    if head is None:
        raise ConfigError(
            f"{who}: {type(model).__name__} has no nn.Linear layer; this method needs a model "
            "whose output is a linear layer on penultimate features"
        )
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(probe)
            via = head(penultimate_features(model, probe))
    finally:
        model.train(was)
    if out.shape != via.shape or not torch.allclose(out, via, rtol=1e-4, atol=1e-5):
        raise ConfigError(
            f"{who}: the last nn.Linear of {type(model).__name__} does not produce its output "
            "(model(x) != head(features(x))); give the model a features(x) method and a final "
            "nn.Linear `head`"
        )
    return head


# ----------------------------------------------------------------------------------- Fisher


def diag_fisher(
    model: nn.Module,
    x: Tensor,
    *,
    labels: Literal["expected", "sampled"] = "expected",
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> tuple[dict[str, Tensor], str]:
    """Diagonal Fisher ``F = mean_x E_{y~p(y|x)} (∇_θ log p(y|x))²`` over the rows of ``x``.

    ``labels="expected"`` sums the expectation exactly (one gradient per class and sample, as
    Golatkar et al.'s official ``hessian()``); ``"sampled"`` draws one label per sample from the
    model's own prediction (an unbiased Monte-Carlo estimate, one gradient per sample).
    Evaluated in eval mode; only parameters with ``requires_grad`` are included.
    Returns ``({name: F}, backend)`` where backend is ``"vmap"`` or ``"loop"``.
    """
    device = torch.device(device)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    was = model.training
    model.eval()
    try:
        try:
            return _fisher_vmap(model, named, x, labels, generator, device), "vmap"
        except (RuntimeError, NotImplementedError, TypeError):
            return _fisher_loop(model, named, x, labels, generator, device), "loop"
    finally:
        model.train(was)


def _draw(logits: Tensor, generator: torch.Generator | None) -> Tensor:
    probs = logits.detach().softmax(-1).cpu().double()
    return torch.multinomial(probs, 1, generator=generator).squeeze(1).to(logits.device)


def _fisher_vmap(model, named, x, labels, generator, device):
    from torch.func import functional_call, grad, vmap

    params = {n: p.detach() for n, p in named}
    buffers = dict(model.named_buffers())
    n_params = sum(p.numel() for p in params.values())
    acc = {n: torch.zeros_like(p) for n, p in params.items()}

    def logp(prm, xi):
        return functional_call(model, {**prm, **buffers}, (xi.unsqueeze(0),)).log_softmax(-1)[0]

    def lp_y(prm, xi, oi):
        return (logp(prm, xi) * oi).sum()

    per_sample_grads = vmap(grad(lp_y), in_dims=(None, 0, 0))
    with torch.no_grad():
        c = model(x[:1].to(device)).shape[-1]
    eye = torch.eye(c, device=device)
    # small chunks are fastest on CPU (cache); C (sample, label) pairs per sample when expected
    per = n_params * (c if labels == "expected" else 1) * 2
    bs = max(1, min(16 if labels == "expected" else 64, _CHUNK_FLOATS // max(1, per)))
    for i in range(0, len(x), bs):
        xb = x[i : i + bs].to(device)
        with torch.no_grad():
            logits = model(xb)
        if labels == "expected":
            w = logits.softmax(-1).reshape(-1)  # weight p(y|x) of each (sample, label) pair
            xs, onehot = xb.repeat_interleave(c, 0), eye.repeat(len(xb), 1)
        else:
            w = None
            xs, onehot = xb, eye[_draw(logits, generator)]
        g = per_sample_grads(params, xs, onehot)
        for n, gi in g.items():
            sq = gi.pow(2)
            acc[n] += sq.sum(0) if w is None else torch.tensordot(w, sq, dims=1)
    return {n: a / max(1, len(x)) for n, a in acc.items()}


def _fisher_loop(model, named, x, labels, generator, device):
    ps = [p for _, p in named]
    acc = [torch.zeros_like(p) for p in ps]
    for i in range(len(x)):
        xi = x[i : i + 1].to(device)
        with torch.enable_grad():
            lp = model(xi).log_softmax(-1)[0]
            if labels == "expected":
                prob = lp.detach().exp()
                for y in range(lp.shape[0]):
                    gs = torch.autograd.grad(lp[y], ps, retain_graph=True, allow_unused=True)
                    for a, g in zip(acc, gs, strict=True):
                        if g is not None:
                            a += prob[y] * g.pow(2)
            else:
                y = int(_draw(lp.unsqueeze(0), generator)[0])
                gs = torch.autograd.grad(lp[y], ps, allow_unused=True)
                for a, g in zip(acc, gs, strict=True):
                    if g is not None:
                        a += g.pow(2)
    return {n: a / max(1, len(x)) for (n, _), a in zip(named, acc, strict=True)}


# ------------------------------------------------------------------- Hessian-vector products

LossFn = Callable[[Tensor, Tensor], Tensor]


def hvp(loss_fn: LossFn, params: Sequence[Tensor], xb: Tensor, yb: Tensor, v: Tensor) -> Tensor:
    """``∇²_θ loss_fn(xb, yb) · v`` by double back-propagation (flat ``v`` and result)."""
    with torch.enable_grad():
        loss = loss_fn(xb, yb)
        g = torch.autograd.grad(loss, params, create_graph=True)
        gv = sum((gi * vi).sum() for gi, vi in zip(g, unflat(v, params), strict=True))
        hv = torch.autograd.grad(gv, params, allow_unused=True)
    return flat([torch.zeros_like(p) if h is None else h for p, h in zip(params, hv, strict=True)])


def grad_sum(
    loss_fn: LossFn,
    params: Sequence[Tensor],
    x: Tensor,
    y: Tensor,
    device: torch.device,
    batch_size: int = 256,
) -> Tensor:
    """``Σ_i ∇_θ loss(x_i, y_i)`` over all rows (``loss_fn`` returns a batch mean)."""
    total = torch.zeros(sum(p.numel() for p in params), device=device)
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
        with torch.enable_grad():
            g = torch.autograd.grad(loss_fn(xb, yb) * len(yb), params, allow_unused=True)
        total += flat(
            [torch.zeros_like(p) if t is None else t for p, t in zip(params, g, strict=True)]
        )
    return total


def full_hvp(
    loss_fn: LossFn,
    params: Sequence[Tensor],
    x: Tensor,
    y: Tensor,
    device: torch.device,
    batch_size: int = 512,
) -> Callable[[Tensor], Tensor]:
    """``v ↦ ∇² mean_i loss(x_i, y_i) · v`` over all rows of ``(x, y)`` (exact, in batches)."""
    n = len(y)

    def mv(v: Tensor) -> Tensor:
        out = torch.zeros_like(v)
        for i in range(0, n, batch_size):
            xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
            out += hvp(loss_fn, params, xb, yb, v) * (len(yb) / n)
        return out

    return mv


# ------------------------------------------------------------------------------- solvers


def lissa(
    batch_hvp: Callable[[Tensor, torch.Generator], Tensor],
    v: Tensor,
    *,
    damping: float,
    scale: float,
    depth: int,
    repeats: int,
    generator: torch.Generator,
    strict: bool = True,
) -> tuple[Tensor, dict[str, float]]:
    """``(H + λI)⁻¹ v`` by LiSSA (Agarwal et al. 2017; Koh & Liang 2017).

    ``h₀ = v``, ``h_j = v + h_{j-1} − (H_j h_{j-1} + λ h_{j-1}) / scale`` with ``H_j`` the Hessian
    of one random mini-batch (``batch_hvp(h, generator)``); the estimate is ``h_depth / scale``,
    averaged over ``repeats`` independent runs. Converges when ``scale`` exceeds the largest
    eigenvalue of the mini-batch Hessians (+λ); the error on an eigen-direction with eigenvalue μ
    decays as ``(1 − (μ+λ)/scale)^depth``. ``strict``: raise when ``|h_j|`` outgrows the
    ``(j+1)|v|`` a convergent recursion allows (non-finite values always raise). (In the
    healing paper's and nimarb's code the recursion is ``v + (1−d)h − Hh/scale``, i.e. their
    damping ``d`` is our ``λ / scale``.)
    """
    vnorm = float(v.norm())
    est = torch.zeros_like(v)
    for _ in range(repeats):
        h = v.clone()
        for j in range(depth):
            h = v + h - (batch_hvp(h, generator) + damping * h) / scale
            hn = float(h.norm())
            grown = strict and hn > 10.0 * (j + 2) * max(vnorm, 1e-30)
            if not math.isfinite(hn) or grown:
                raise FloatingPointError(
                    f"LiSSA diverged at step {j + 1} (|h| = {hn:.3g}, |v| = {vnorm:.3g}): "
                    f"raise lissa_scale (now {scale:g}) above the largest Hessian eigenvalue, or "
                    "raise damping"
                )
        est += h / scale
    return est / repeats, {"hvps": float(depth * repeats)}


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor],
    b: Tensor,
    *,
    iters: int,
    tol: float,
) -> tuple[Tensor, dict[str, float]]:
    """Solve ``A x = b`` for symmetric ``A`` (given by ``matvec``) by conjugate gradients.

    Stops at ``|r| ≤ tol·|b|``, after ``iters`` iterations, or at the first direction of
    non-positive curvature (an indefinite ``A``, e.g. a non-convex net's Hessian with too little
    damping): the iterate reached so far is returned (truncated CG, Steihaug 1983).
    """
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = float(r @ r)
    bnorm = math.sqrt(float(b @ b)) or 1.0
    done, neg = 0, 0.0
    while done < iters and math.sqrt(rr) > tol * bnorm:
        ap = matvec(p)
        pap = float(p @ ap)
        if not pap > 0:  # non-positive curvature (or NaN): keep the iterate reached
            neg = 1.0
            break
        alpha = rr / pap
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = float(r @ r)
        p = r + (rr_new / rr) * p
        rr = rr_new
        done += 1
    return x, {"cg_iters": float(done), "cg_rel_residual": math.sqrt(rr) / bnorm, "cg_neg": neg}
