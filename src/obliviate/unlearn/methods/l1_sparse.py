"""``l1_sparse`` (ℓ1-sparse MU): fine-tune on the retain set with a decaying ℓ1 penalty.

Jia et al., "Model Sparsity Can Simplify Machine Unlearning" (NeurIPS 2023; code
``OPTML-Group/Unlearn-Sparse``, ``FT_l1`` / ``FT_prune``). Minimise

    CE(retain) + γ_t · ‖θ‖₁,   γ_t = γ · (1 − e / (E − E₀))  for epoch e < E − E₀, else 0,

with E the number of epochs and E₀ = ``no_l1_epochs`` — the linear per-epoch decay of their code
(``current_alpha``). The norm runs over every trainable parameter (their code: all parameters).
The forget set is never read.

Defaults: γ is not fixed by the authors' README (``--alpha ${alpha}``); third-party recipes on
CIFAR-10 use 1e-4 to 5e-4, and 5e-4 is our default. Their 10 epochs at lr 0.01 are reduced to
2 epochs for our small CNNs (the tuner searches more).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from obliviate.config import EPOCHS_MAX, opt
from obliviate.unlearn.base import GradientConfig, GradientUnlearner, ce, register_unlearner
from obliviate.unlearn.space import FloatRange, SearchSpace


@dataclass
class L1SparseConfig(GradientConfig):
    gamma: float = opt(
        5e-4,
        "Initial l1 weight gamma, decayed linearly per epoch (CIFAR-10 recipes: 1e-4-5e-4).",
        ge=0,
    )
    no_l1_epochs: int = opt(
        0, "Final epochs without the l1 term (their code: --no-l1-epochs 0).", ge=0, le=EPOCHS_MAX
    )
    epochs: int = opt(2, "Passes over the retain set (Jia et al.: 10).")
    lr: float = opt(0.01, "Learning rate (Jia et al.: 0.01).")

    def __post_init__(self) -> None:
        super().__post_init__()


def l1_weight(gamma: float, epoch: int, epochs: int, no_l1_epochs: int) -> float:
    """γ_e of the ℓ1-sparse code: linear decay over the first ``epochs − no_l1_epochs`` epochs."""
    l1_epochs = epochs - no_l1_epochs
    if epoch >= l1_epochs or l1_epochs <= 0:
        return 0.0
    return gamma * (1.0 - epoch / l1_epochs)


@register_unlearner("l1_sparse", tags={"needs_retain"}, paper="Jia et al. 2023 (NeurIPS)")
class L1Sparse(GradientUnlearner):
    """Minimise CE(retain) + γ_t·‖θ‖₁ with γ_t decaying linearly to 0 over the epochs."""

    Config = L1SparseConfig
    search_space: ClassVar[SearchSpace] = {
        "lr": FloatRange(0.01, 0.03, log=True),
        "gamma": FloatRange(1e-4, 5e-4, log=True),
        "epochs": [2, 5],
    }
    driver = "retain"
    uses_forget = False

    def setup(self, model, task):
        self._steps_per_epoch = max(1, math.ceil(len(task.retain) / self.config.batch_size))
        self._step = 0
        self._params = [p for p in model.parameters() if p.requires_grad]

    def current_gamma(self) -> float:
        cfg = self.config
        return l1_weight(
            cfg.gamma, self._step // self._steps_per_epoch, cfg.epochs, cfg.no_l1_epochs
        )

    def compute_loss(self, model, forget, retain):
        loss = ce(model, retain)
        g = self.current_gamma()
        if g > 0:
            loss = loss + g * torch.stack([p.abs().sum() for p in self._params]).sum()
        return loss

    def after_step(self, model, step):
        self._step = step + 1
