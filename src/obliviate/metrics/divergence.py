"""Distances to gold: weight-space L2, output JS divergence, and re-learn time (RURK Table 1)."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from obliviate.errors import ConfigError
from obliviate.metrics._common import METRICS, MetricError, check_xy, logits


@METRICS.register(
    "weight_distance",
    higher_is_better=False,
    unit="L2 norm",
    description="‖θ_a − θ_b‖₂ over all parameters (same architecture); meaningful to gold "
    "because gold shares the original's initialisation seed",
    reference="DESIGN.md",
)
def weight_distance(a: nn.Module, b: nn.Module, include_buffers: bool = False) -> float:
    """L2 distance between the parameters of two models of the same architecture (float64).

    Raises :class:`MetricError` naming the keys that are missing on either side or whose shapes
    differ. ``include_buffers`` adds floating-point buffers (e.g. BatchNorm running stats).
    """
    sa, sb = a.state_dict(), b.state_dict()
    only_a, only_b = sorted(set(sa) - set(sb)), sorted(set(sb) - set(sa))
    if only_a or only_b:
        raise MetricError(
            "weight distance needs the same architecture; keys only in the first model: "
            f"{only_a[:10]}{' …' if len(only_a) > 10 else ''}, only in the second: "
            f"{only_b[:10]}{' …' if len(only_b) > 10 else ''}"
        )
    bad = [
        f"{k}: {tuple(sa[k].shape)} vs {tuple(sb[k].shape)}"
        for k in sa
        if sa[k].shape != sb[k].shape
    ]
    if bad:
        raise MetricError(f"weight distance: parameter shapes differ: {bad[:10]}")
    keys = [n for n, _ in a.named_parameters()]
    if include_buffers:
        keys += [n for n, t in a.named_buffers() if t.is_floating_point() and n in sa]
    total = 0.0
    with torch.no_grad():
        for k in keys:
            d = sa[k].detach().double().cpu() - sb[k].detach().double().cpu()
            total += float(d.pow(2).sum())
    return math.sqrt(total)


def _log_mean_exp0(d: Tensor) -> Tensor:
    """log((1 + e^d) / 2), computed without overflow and exactly 0 at d = 0."""
    pos = d > 0
    base = torch.log1p(torch.expm1(torch.where(pos, -d, d)) / 2)
    return torch.where(pos, d + base, base)


def js_divergence_from_logits(za: Tensor, zb: Tensor) -> Tensor:
    """Per-sample JS divergence (natural log, in [0, ln 2]) of softmax(za) and softmax(zb).

    Exactly 0 for identical logits: log p − log m is computed as −log((1 + e^(log q − log p))/2).
    """
    la, lb = torch.log_softmax(za.double(), 1), torch.log_softmax(zb.double(), 1)
    pa, pb = la.exp(), lb.exp()
    zero = torch.zeros_like(pa)
    kl_a = torch.where(pa > 0, -pa * _log_mean_exp0(lb - la), zero).sum(1)
    kl_b = torch.where(pb > 0, -pb * _log_mean_exp0(la - lb), zero).sum(1)
    return (0.5 * (kl_a + kl_b)).clamp(0.0, math.log(2.0))


@METRICS.register(
    "js_divergence",
    higher_is_better=False,
    unit="nats in [0, ln 2]",
    description="mean Jensen–Shannon divergence between two models' output distributions on a "
    "set (e.g. the forget set, unlearned vs gold)",
    reference="DESIGN.md; JS output divergence as in e.g. SCRUB (Kurmanji et al. 2023)",
)
def js_divergence(
    a: nn.Module,
    b: nn.Module,
    x: Tensor,
    batch_size: int = 1000,
    device: str | torch.device = "cpu",
) -> float:
    """Mean over the samples of x of JS(softmax(a(x)) ‖ softmax(b(x))), natural log; 0 iff equal."""
    if len(x) == 0:
        raise MetricError("JS divergence of an empty set is undefined")
    za, zb = logits(a, x, batch_size, device), logits(b, x, batch_size, device)
    if za.shape != zb.shape:
        raise MetricError(
            f"the models output different shapes: {tuple(za.shape)} vs {tuple(zb.shape)}"
        )
    return float(js_divergence_from_logits(za, zb).mean())


@dataclass(frozen=True)
class RelearnResult:
    """``epochs`` until the forget loss ≤ threshold × the original's (0 = already there).
    ``capped`` is True when ``max_epochs`` ran out first (report as "> max_epochs")."""

    epochs: int
    capped: bool
    target_loss: float
    losses: tuple[float, ...]  # forget loss after 0, 1, ... epochs
    max_epochs: int

    def to_dict(self) -> dict[str, object]:
        return {
            "epochs": f">{self.max_epochs}" if self.capped else self.epochs,
            "capped": self.capped,
            "target_loss": self.target_loss,
            "final_loss": self.losses[-1],
        }


def _mean_loss(
    model: nn.Module, x: Tensor, y: Tensor, batch_size: int, device: str | torch.device
) -> float:
    z = logits(model, x, batch_size, device).double()
    return float(F.cross_entropy(z, y.long().cpu(), reduction="mean"))


@METRICS.register(
    "relearn_time",
    higher_is_better=None,
    unit="epochs",
    description="fine-tuning epochs on the forget set until its loss is within 5 % of the "
    "original model's; ideal is the gold model's value",
    reference="RURK (Hsu et al. 2025) Table 1 'Re-learn Time'",
)
def relearn_time(
    model: nn.Module,
    original: nn.Module,
    x_forget: Tensor,
    y_forget: Tensor,
    lr: float = 0.01,
    max_epochs: int = 30,
    batch_size: int = 128,
    threshold: float = 1.05,
    seed: int = 0,
    momentum: float = 0.9,
    device: str | torch.device = "cpu",
) -> RelearnResult:
    """Epochs of SGD fine-tuning of a COPY of ``model`` on the forget set until
    L(copy, S_f) ≤ threshold · L(original, S_f) (RURK: η = 0.05, capped at 30).

    ``model`` and ``original`` are not modified. Losses are mean cross-entropy in eval mode;
    training uses train mode, seeded shuffling and a forked, seeded torch RNG (deterministic
    on CPU for a given seed).
    """
    check_xy(x_forget, y_forget, "forget set")
    if max_epochs < 0:
        raise ConfigError(f"max_epochs must be >= 0, got {max_epochs}")
    if threshold <= 0 or lr <= 0 or batch_size < 1:
        raise ConfigError(
            f"threshold and lr must be > 0 and batch_size >= 1, got {threshold}, {lr}, {batch_size}"
        )
    target = threshold * _mean_loss(original, x_forget, y_forget, 1000, device)
    losses = [_mean_loss(model, x_forget, y_forget, 1000, device)]
    if losses[0] <= target:
        return RelearnResult(0, False, target, tuple(losses), max_epochs)
    net = copy.deepcopy(model).to(device)
    params = [p for p in net.parameters() if p.requires_grad]
    if not params:
        raise MetricError("relearn_time: the model has no trainable parameters")
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum)
    gen = torch.Generator().manual_seed(seed)
    n = len(x_forget)
    with torch.random.fork_rng(devices=[]), torch.inference_mode(False), torch.enable_grad():
        torch.manual_seed(seed)
        for epoch in range(1, max_epochs + 1):
            net.train()
            perm = torch.randperm(n, generator=gen)
            for i in range(0, n, batch_size):
                idx = perm[i : i + batch_size]
                xb, yb = x_forget[idx].to(device), y_forget[idx].to(device).long()
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(net(xb), yb).backward()
                opt.step()
            losses.append(_mean_loss(net, x_forget, y_forget, 1000, device))
            if losses[-1] <= target:
                return RelearnResult(epoch, False, target, tuple(losses), max_epochs)
    return RelearnResult(max_epochs, True, target, tuple(losses), max_epochs)
