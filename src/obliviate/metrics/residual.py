"""Residual knowledge r_τ (RURK: Hsu et al., "The Unseen Threat: Residual Knowledge in Machine
Unlearning under Perturbed Samples", NeurIPS 2025, Eq. 4).

For a forget sample (x, y), draw c perturbations x'_1..x'_c of x and feed the SAME x'_j to the
unlearned model m and the gold (retrained) model a:

    r_τ(x, y) = #{j : m(x'_j) = y} / #{j : a(x'_j) = y}

r_τ > 1 means residual knowledge (a privacy risk), r_τ < 1 over-forgetting, and r_τ = 1 for exact
unlearning. Samples with zero gold hits are excluded from the mean and counted separately; if
every sample has zero gold hits (e.g. a whole forgotten class), the result is ``skipped``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from obliviate.errors import ConfigError
from obliviate.memo import LRUCache, fingerprint, module_fingerprint
from obliviate.metrics._common import METRICS, check_xy, eval_mode
from obliviate.perturb import PERTURBATIONS, perturb

#: τ grid for MNIST-class data (DESIGN.md); those models are robust to CIFAR-sized τ.
DEFAULT_TAUS: tuple[float, ...] = (0.0, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3)
#: default c (perturbations per forget sample): 100 for random noise (RURK), 20 for FGSM/PGD,
#: whose c random starts cost a forward+backward per step each and vary much less.
DEFAULT_C: dict[str, int] = {"gaussian": 100, "uniform": 100, "fgsm": 20, "pgd": 20}


#: Gold predictions on model-free perturbations, keyed by everything that determines them (the
#: gold weights, the forget data, τ, kind, c, seed, chunking): an audit of several unlearned
#: models against one gold model computes gold's side of r_τ once. Bounded LRU.
_GOLD_PREDS: LRUCache[list[Tensor]] = LRUCache("r_tau gold predictions", 32)


def clear_gold_cache() -> None:
    """Forget the cached gold predictions (they are keyed by weights, so never stale)."""
    _GOLD_PREDS.clear()


@dataclass
class ResidualKnowledge:
    """Result of :func:`residual_knowledge` at one τ.

    ``mean`` and ``frac_gt1`` (fraction of the *used* samples with r > 1) are ``None`` exactly
    when ``skipped`` gives the reason. ``per_sample`` holds r for every forget sample, NaN where
    excluded (zero gold hits); ``n_excluded_unlearned_hits`` counts excluded samples that the
    unlearned model still hits (r would be infinite). ``disagreement`` is the fraction of all
    c·N perturbed inputs on which the two models' predictions differ (RURK's k_τ).
    """

    tau: float
    kind: str
    c: int
    mean: float | None
    frac_gt1: float | None
    n_used: int
    n_excluded: int
    n_excluded_unlearned_hits: int
    disagreement: float
    per_sample: Tensor
    hits_unlearned: Tensor
    hits_gold: Tensor
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        """True when r_τ was computed (``skipped`` is None)."""
        return self.skipped is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no per-sample tensors); a skipped mean reads ``"skipped: …"``."""
        out: dict[str, Any] = {
            "tau": self.tau,
            "kind": self.kind,
            "c": self.c,
            "n_used": self.n_used,
            "n_excluded": self.n_excluded,
            "n_excluded_unlearned_hits": self.n_excluded_unlearned_hits,
            "disagreement": self.disagreement,
        }
        if self.ok:
            out.update(mean=self.mean, frac_gt1=self.frac_gt1)
        else:
            out.update(mean=f"skipped: {self.skipped}", frac_gt1=f"skipped: {self.skipped}")
        return out


@METRICS.register(
    "residual_knowledge",
    higher_is_better=None,
    unit="ratio (1 = gold)",
    description="r_τ: hits of the unlearned model / hits of the gold model on the same perturbed "
    "forget samples; >1 residual knowledge, <1 over-forgetting, ideal 1",
    reference="RURK (Hsu et al. 2025) Eq. 4",
)
def residual_knowledge(
    unlearned: nn.Module,
    gold: nn.Module,
    x_forget: Tensor,
    y_forget: Tensor,
    tau: float,
    kind: str = "gaussian",
    c: int | None = None,
    seed: int = 0,
    batch_size: int = 2000,
    device: str | torch.device = "cpu",
    **attack_kw: Any,
) -> ResidualKnowledge:
    """Monte-Carlo r_τ over the forget set (RURK Eq. 4) with ``kind`` perturbations of size τ.

    ``c`` defaults to :data:`DEFAULT_C` (100 for gaussian/uniform, 20 for fgsm/pgd). For ``fgsm``
    and ``pgd`` the attack runs against the UNLEARNED model and decreases its loss on the
    forgotten label (``direction="decrease"``), from c random starts (``random_start=True``
    unless overridden); ``attack_kw`` (``alpha``, ``steps``, ...) go to the attack. Both models
    must be on ``device``. Up to ``batch_size`` perturbed inputs are held at a time (samples are
    chunked; one sample's c copies are never split). Deterministic for a given seed and
    batch_size; ``r = 1`` exactly when ``unlearned`` and ``gold`` compute the same function.
    """
    check_xy(x_forget, y_forget, "forget set")
    PERTURBATIONS.get(kind)
    needs_model = PERTURBATIONS.meta(kind)["needs_model"]
    c = DEFAULT_C.get(kind, 100) if c is None else int(c)
    if c < 1:
        raise ConfigError(f"c must be >= 1, got {c}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if needs_model:
        attack_kw.setdefault("random_start", True)
        attack_kw.setdefault("direction", "decrease")
    gen = torch.Generator().manual_seed(seed)
    n = len(x_forget)
    # At τ = 0 every perturbation is x itself (clamped): evaluate one copy, count it c times.
    reps = 1 if float(tau) == 0.0 else c
    per_chunk = max(1, batch_size // reps)
    hits_u = torch.zeros(n, dtype=torch.long)
    hits_g = torch.zeros(n, dtype=torch.long)
    n_disagree = 0
    # Model-free perturbations do not depend on the unlearned model: gold's predictions on them
    # are reused across audits against the same gold model (identical inputs, same outputs).
    key = None
    if not needs_model and gold is not unlearned and gold.state_dict():
        key = (
            module_fingerprint(gold),
            fingerprint(x_forget, y_forget),
            float(tau), kind, c, seed, per_chunk, str(device),
            tuple(sorted((k, repr(v)) for k, v in attack_kw.items())),
        )  # fmt: skip
    cached = _GOLD_PREDS.get(key) if key is not None else None
    fresh: list[Tensor] = []
    for j, i in enumerate(range(0, n, per_chunk)):
        xc = x_forget[i : i + per_chunk].to(device)
        yc = y_forget[i : i + per_chunk].to(device).long()
        xr, yr = xc.repeat_interleave(reps, dim=0), yc.repeat_interleave(reps)
        xp = perturb(kind, unlearned if needs_model else None, xr, yr, tau, gen, **attack_kw)
        with eval_mode(unlearned, gold), torch.inference_mode():
            pu = unlearned(xp).argmax(1)
            if gold is unlearned:
                pg = pu
            elif cached is not None:
                pg = cached[j].to(pu.device)
            else:
                pg = gold(xp).argmax(1)
                fresh.append(pg.cpu())
        mult = c // reps
        hits_u[i : i + len(xc)] = (pu == yr).view(-1, reps).sum(1).cpu() * mult
        hits_g[i : i + len(xc)] = (pg == yr).view(-1, reps).sum(1).cpu() * mult
        n_disagree += int((pu != pg).sum()) * mult
    if key is not None and cached is None:
        _GOLD_PREDS.put(key, fresh)
    return _summarise(hits_u, hits_g, n_disagree, float(tau), kind, c)


def _summarise(
    hits_u: Tensor, hits_g: Tensor, n_disagree: int, tau: float, kind: str, c: int
) -> ResidualKnowledge:
    n = len(hits_u)
    used = hits_g > 0
    r = torch.full((n,), float("nan"), dtype=torch.float64)
    r[used] = hits_u[used].double() / hits_g[used].double()
    n_used = int(used.sum())
    n_exc = n - n_used
    exc_hits = int((hits_u[~used] > 0).sum())
    mean = frac = skipped = None
    if n_used:
        mean = float(r[used].mean())
        frac = float((r[used] > 1).double().mean())
    else:
        skipped = (
            f"all {n} forget samples have zero gold hits at tau={tau} ({kind}, c={c}): the gold "
            "model never predicts the forgotten label, so r_tau is undefined (e.g. a whole "
            "forgotten class)"
        )
    return ResidualKnowledge(
        tau=tau,
        kind=kind,
        c=c,
        mean=mean,
        frac_gt1=frac,
        n_used=n_used,
        n_excluded=n_exc,
        n_excluded_unlearned_hits=exc_hits,
        disagreement=n_disagree / (n * c),
        per_sample=r,
        hits_unlearned=hits_u,
        hits_gold=hits_g,
        skipped=skipped,
    )


def residual_curve(
    unlearned: nn.Module,
    gold: nn.Module,
    x_forget: Tensor,
    y_forget: Tensor,
    taus: Sequence[float] = DEFAULT_TAUS,
    kind: str = "gaussian",
    c: int | None = None,
    seed: int = 0,
    batch_size: int = 2000,
    device: str | torch.device = "cpu",
    **attack_kw: Any,
) -> list[ResidualKnowledge]:
    """:func:`residual_knowledge` at every τ of ``taus`` (same seed at each τ: common random
    numbers, so the curve is smooth in τ)."""
    if not taus:
        raise ConfigError("taus must name at least one tau")
    return [
        residual_knowledge(
            unlearned, gold, x_forget, y_forget, t, kind, c, seed, batch_size, device, **attack_kw
        )
        for t in taus
    ]
