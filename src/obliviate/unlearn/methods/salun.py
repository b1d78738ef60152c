"""``salun`` (SalUn): random-label unlearning restricted to the weights salient for the forget set.

Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency" (ICLR 2024;
code ``OPTML-Group/Unlearn-Saliency``, ``generate_mask.py`` + ``unlearn/RL.py``).

1. Saliency mask: ``m = 1[|∇_θ CE(θ; D_f)| ≥ threshold]`` where the threshold keeps the top
   ``mask_fraction`` (default 0.5, their ``with_0.5.pt``) of all entries. **Global** threshold
   over every trainable parameter, as in their code (it concatenates all gradients before
   ranking), not per layer: layers whose weights matter more for the forget set get more of the
   budget. Exactly ``round(fraction · N)`` entries are kept (ties broken by position). The
   gradient is of the mean forget CE over the whole forget set, in eval mode (their code sums
   per-batch means, which differs only in how the last, smaller batch is weighted).
2. Training: the ``random_label`` objective CE(forget, y' ≠ y) + α·CE(retain), with every
   gradient multiplied by the mask. Deviation: after each step the masked-out entries are reset
   to their original values, because SGD's weight decay and momentum would otherwise still move
   them (their RL code has that leak; their later FT code restores them the same way). The
   masked-out weights therefore stay exactly unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from obliviate.config import opt
from obliviate.errors import ConfigError
from obliviate.unlearn.base import register_unlearner
from obliviate.unlearn.methods.random_label import RandomLabel, RandomLabelConfig
from obliviate.unlearn.space import FloatRange, SearchSpace


def saliency_mask(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    fraction: float,
    batch_size: int = 128,
) -> dict[str, torch.Tensor]:
    """Boolean masks (name → tensor) keeping the top ``fraction`` of |∇ CE(x, y)| globally."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not params:
        raise ConfigError(f"{type(model).__name__} has no trainable parameter to mask")
    dev = params[0][1].device
    grads = [torch.zeros_like(p) for _, p in params]
    was_training = model.training
    model.eval()
    n = len(y)
    for i in range(0, n, batch_size):
        xb, yb = x[i : i + batch_size].to(dev), y[i : i + batch_size].to(dev)
        loss = F.cross_entropy(model(xb), yb, reduction="sum") / n
        gs = torch.autograd.grad(loss, [p for _, p in params], allow_unused=True)
        for acc, g in zip(grads, gs, strict=True):
            if g is not None:
                acc.add_(g)
    model.train(was_training)
    flat = torch.cat([g.abs().flatten() for g in grads])
    keep = round(fraction * flat.numel())
    chosen = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    if keep > 0:
        chosen[torch.topk(flat, keep, sorted=False).indices] = True
    masks, start = {}, 0
    for (name, p), _ in zip(params, grads, strict=True):
        masks[name] = chosen[start : start + p.numel()].view_as(p)
        start += p.numel()
    return masks


@dataclass
class SalUnConfig(RandomLabelConfig):
    mask_fraction: float = opt(
        0.5,
        "Fraction of weights (global top |grad| on the forget set) that may change (SalUn: 0.5).",
        gt=0,
        le=1,
    )
    epochs: int = opt(2, "Passes over the retain set (SalUn: 10 on CIFAR-10).")
    lr: float = opt(0.01, "Learning rate (SalUn: 0.013; README 0.1 for random forgetting).")

    def __post_init__(self) -> None:
        super().__post_init__()


@register_unlearner("salun", tags={"needs_retain"}, paper="Fan et al. 2024 (ICLR)")
class SalUn(RandomLabel):
    """Random-label unlearning with gradients masked to the forget set's salient weights."""

    Config = SalUnConfig
    search_space: ClassVar[SearchSpace] = {
        "lr": FloatRange(0.003, 0.03, log=True),
        "mask_fraction": [0.5],
        "epochs": [2, 5],
    }

    def setup(self, model, task):
        super().setup(model, task)
        f = task.forget
        masks = saliency_mask(model, f.x, f.y, self.config.mask_fraction, self.config.batch_size)
        by_name = dict(model.named_parameters())
        self._masked = []  # (param, boolean mask, original values)
        self._hooks = []
        for name, m in masks.items():
            p = by_name[name]
            fm = m.to(p.dtype)
            self._masked.append((p, m, p.detach().clone()))
            self._hooks.append(p.register_hook(lambda g, fm=fm: g * fm))
        total = sum(m.numel() for m in masks.values())
        self._mask_stats = {
            "mask_fraction": sum(int(m.sum()) for m in masks.values()) / max(1, total)
        }

    @torch.no_grad()
    def after_step(self, model, step):
        for p, m, p0 in self._masked:
            p.copy_(torch.where(m, p, p0))

    def _unlearn(self, model, task):
        try:
            stats = super()._unlearn(model, task)
        finally:
            for h in getattr(self, "_hooks", []):
                h.remove()
            self._hooks, self._masked = [], []
        return {**stats, **self._mask_stats}
