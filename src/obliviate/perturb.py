"""Input perturbations: Gaussian, uniform, FGSM, PGD — one module reused by metrics, attacks and
defenses.

Units (DESIGN.md "Definitions to share"): pixels are in [0, 1]; the radius / noise level ``tau``
is in those units and is applied BEFORE the model's own normalisation; every result is clamped
to [0, 1].

* ``gaussian``: x + N(0, τ²) per pixel, clamped. NOT confined to a τ-ball (as RURK,
  Hsu et al. NeurIPS 2025, and ``torchattacks.GN`` use it).
* ``uniform``: uniform in the ℓ∞ τ-ball around x, clamped.
* ``fgsm`` / ``pgd``: ℓ∞ radius τ. ``direction="decrease"`` (default) steps DOWN the model's
  cross-entropy on label y — the holder of a forgotten sample searching the ball for inputs the
  model still recognises (RURK §3, residual knowledge); ``"increase"`` is the classic untargeted
  adversarial example (Goodfellow et al. 2015; Madry et al. 2018).

Guarantees of ``fgsm``/``pgd``: the result satisfies ``|x_adv − x|∞ ≤ τ`` and lies in [0, 1]
(for x in [0, 1]); the model is run in eval mode and its mode restored; gradients are taken
with ``torch.autograd.grad`` w.r.t. the input only, so no ``.grad`` is written to parameters and
the parameters are unchanged. All randomness comes from ``generator`` (deterministic under a
seed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from obliviate.errors import ConfigError
from obliviate.registry import Registry

Direction = Literal["decrease", "increase"]

#: name → perturbation function. Metadata: ``needs_model`` (gradient attack), ``ball``
#: (``"linf"`` when the result stays in the ℓ∞ τ-ball, ``None`` otherwise), ``description``.
PERTURBATIONS: Registry[Callable[..., Tensor]] = Registry("perturbation")


def _check_tau(tau: float) -> float:
    tau = float(tau)
    if not 0.0 <= tau <= 1.0:
        raise ConfigError(f"tau must be in [0, 1] (pixel units), got {tau}")
    return tau


def _rand(kind: str, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal (``"normal"``) or U[0, 1) (``"uniform"``) noise shaped like ``like``."""
    dev = generator.device if generator is not None else torch.device("cpu")
    fn = torch.randn if kind == "normal" else torch.rand
    noise = fn(like.shape, generator=generator, dtype=like.dtype, device=dev)
    return noise.to(like.device)


def project(x_adv: Tensor, x: Tensor, tau: float) -> Tensor:
    """Project ``x_adv`` onto the ℓ∞ τ-ball around ``x`` and then onto [0, 1]."""
    return torch.minimum(torch.maximum(x_adv, x - tau), x + tau).clamp_(0.0, 1.0)


@PERTURBATIONS.register(
    "gaussian", needs_model=False, ball=None, description="x + N(0, τ²) per pixel, clamped"
)
def gaussian(x: Tensor, tau: float, generator: torch.Generator | None = None) -> Tensor:
    """x + N(0, τ²) per pixel, clamped to [0, 1]. Not confined to a τ-ball (RURK's Gaussian)."""
    tau = _check_tau(tau)
    with torch.no_grad():
        return (x + tau * _rand("normal", x, generator)).clamp_(0.0, 1.0)


@PERTURBATIONS.register(
    "uniform", needs_model=False, ball="linf", description="uniform in the ℓ∞ τ-ball, clamped"
)
def uniform(x: Tensor, tau: float, generator: torch.Generator | None = None) -> Tensor:
    """Uniform sample of the ℓ∞ τ-ball around x, clamped to [0, 1]."""
    tau = _check_tau(tau)
    with torch.no_grad():
        return project(x + tau * (2.0 * _rand("uniform", x, generator) - 1.0), x, tau)


@contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _sign(direction: str) -> float:
    if direction == "decrease":
        return -1.0
    if direction == "increase":
        return 1.0
    raise ConfigError(f"direction must be 'decrease' or 'increase', got {direction!r}")


def _input_grad(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """∂ CE(model(x), y) (summed over the batch) / ∂x, without touching parameter ``.grad``."""
    xa = x.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(model(xa), y, reduction="sum")
    (g,) = torch.autograd.grad(loss, xa)
    return g


def _prepare(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    if len(x) != len(y):
        raise ConfigError(f"x has {len(x)} inputs but y has {len(y)} labels")
    # Clones made outside inference mode, so inputs created under it can enter autograd.
    return x.detach().clone(), y.detach().clone().to(x.device).long()


@PERTURBATIONS.register(
    "fgsm",
    needs_model=True,
    ball="linf",
    description="one signed-gradient step of size α (default τ) in the ℓ∞ τ-ball",
)
def fgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    tau: float,
    direction: Direction = "decrease",
    random_start: bool = False,
    alpha: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """FGSM (Goodfellow et al. 2015): ``x ± α·sign(∇ₓ CE(model(x), y))``, projected.

    ``direction="decrease"`` steps against the gradient (lowers the loss on y). With
    ``random_start`` the step starts from a uniform point of the τ-ball (Wong et al. 2020),
    which makes repeated draws differ. ``alpha`` defaults to τ.
    """
    tau = _check_tau(tau)
    sign = _sign(direction)
    alpha = tau if alpha is None else float(alpha)
    with torch.inference_mode(False), torch.enable_grad(), _eval(model):
        x, y = _prepare(x, y)
        x0 = uniform(x, tau, generator) if random_start else x
        g = _input_grad(model, x0, y)
        with torch.no_grad():
            return project(x0 + sign * alpha * g.sign(), x, tau)


@PERTURBATIONS.register(
    "pgd",
    needs_model=True,
    ball="linf",
    description="projected gradient steps (default 10, α = 2.5τ/steps) in the ℓ∞ τ-ball",
)
def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    tau: float,
    alpha: float | None = None,
    steps: int = 10,
    random_start: bool = True,
    generator: torch.Generator | None = None,
    direction: Direction = "decrease",
) -> Tensor:
    """ℓ∞ PGD (Madry et al. 2018): ``steps`` signed-gradient steps of size ``alpha``, each
    projected onto the τ-ball around x and [0, 1].

    ``alpha`` defaults to 2.5·τ/steps (Madry et al.; ≈ 2/255 for τ = 8/255 and 10 steps, as in
    RURK App. C). ``random_start`` starts from a uniform point of the ball.
    ``direction="decrease"`` minimises CE on y (residual knowledge); ``"increase"`` maximises it.
    """
    tau = _check_tau(tau)
    sign = _sign(direction)
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    alpha = 2.5 * tau / steps if alpha is None else float(alpha)
    if alpha < 0:
        raise ConfigError(f"alpha must be >= 0, got {alpha}")
    with torch.inference_mode(False), torch.enable_grad(), _eval(model):
        x, y = _prepare(x, y)
        x_adv = uniform(x, tau, generator) if random_start else x.clone()
        for _ in range(steps):
            g = _input_grad(model, x_adv, y)
            with torch.no_grad():
                x_adv = project(x_adv + sign * alpha * g.sign(), x, tau)
        return x_adv.detach()


def perturb(
    kind: str,
    model: nn.Module | None,
    x: Tensor,
    y: Tensor | None,
    tau: float,
    generator: torch.Generator | None = None,
    **kw: Any,
) -> Tensor:
    """Dispatch to a registered perturbation: ``perturb("pgd", model, x, y, 0.03, g, steps=10)``.

    ``model`` and ``y`` are only used (and then required) by gradient attacks.
    """
    fn = PERTURBATIONS.get(kind)
    if PERTURBATIONS.meta(kind)["needs_model"]:
        if model is None or y is None:
            raise ConfigError(f"perturbation {kind!r} needs a model and labels y")
        return fn(model, x, y, tau, generator=generator, **kw)
    if kw:
        raise ConfigError(f"perturbation {kind!r} takes no options, got {sorted(kw)}")
    return fn(x, tau, generator=generator)


__all__ = ["PERTURBATIONS", "fgsm", "gaussian", "perturb", "pgd", "project", "uniform"]
