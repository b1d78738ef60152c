"""``eu_k`` (EU-k, exact unlearning of the last k layers): re-initialise the last k layers and
retrain them on the retain set, the rest frozen.

Goel et al. 2022 (code ``shash42/Evaluating-Inexact-Unlearning``); RURK App. B.3 (lr 1e-2,
10 epochs). The layers are chosen as in :mod:`cf_k` (the last k weight layers plus the
normalisation layers among them). Each is re-initialised with its own ``reset_parameters()``
(PyTorch's default init, which also resets BatchNorm running statistics), drawn from the torch
RNG seeded with the task seed; a module without ``reset_parameters`` gets Kaiming-uniform
weights (≥ 2-D tensors) and zero vectors. The frozen part is exactly unchanged (see ``cf_k``).

It is "exact" only if the frozen part carries no information about the forget set, which is not
true of a model trained on it; hence no ``exact`` tag (Goel et al. make the same point).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from obliviate.config import opt
from obliviate.unlearn.base import register_unlearner
from obliviate.unlearn.methods.cf_k import CFk, CFkConfig
from obliviate.unlearn.space import FloatRange, SearchSpace


@torch.no_grad()
def reinit_module(m: nn.Module) -> None:
    """Re-initialise ``m``'s own parameters (its ``reset_parameters`` when it has one)."""
    reset = getattr(m, "reset_parameters", None)
    if callable(reset):
        reset()
        return
    for p in m.parameters(recurse=False):
        if p.dim() >= 2:
            nn.init.kaiming_uniform_(p, a=math.sqrt(5))
        else:
            nn.init.zeros_(p)


@dataclass
class EUkConfig(CFkConfig):
    epochs: int = opt(5, "Passes over the retain set to retrain the reset layers (RURK: 10).")


@register_unlearner("eu_k", tags={"needs_retain"}, paper="Goel et al. 2022")
class EUk(CFk):
    """Re-initialise the last k layers (seeded) and retrain them on retain, the rest frozen."""

    Config = EUkConfig
    search_space: ClassVar[SearchSpace] = {
        "k": [1, 2, 3],
        "lr": FloatRange(0.01, 0.03, log=True),
        "epochs": [2, 5],
    }

    def setup(self, model, task):
        super().setup(model, task)
        for _, m in self._layers:
            reinit_module(m)
