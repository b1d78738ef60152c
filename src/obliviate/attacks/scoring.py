"""Per-sample damage scores for adversarial deletion requests: true-class logit, loss,
per-sample loss-gradient norm (closed form on the final linear layer, or every parameter with
``torch.func.vmap``) and the influence of removal on a held-out loss (Koh & Liang, "Understanding
Black-box Predictions via Influence Functions", ICML 2017, restricted to the final layer).
Every score is float64 on the CPU, higher = expected more damaging to remove.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from obliviate.errors import ConfigError
from obliviate.inference import batched_logits
from obliviate.metrics._common import features
from obliviate.unlearn._second_order import checked_head, conjugate_gradient
from obliviate.utils import resolve_device

__all__ = ["influence_scores", "sample_scores"]


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
