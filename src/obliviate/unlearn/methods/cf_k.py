"""``cf_k`` (CF-k, catastrophic forgetting of the last k layers): fine-tune only the last k layers
on the retain set, the rest frozen.

Goel et al., "Towards Adversarial Evaluation of Machine Unlearning" / "Evaluating Inexact
Unlearning Requires Revisiting Forgetting" (2022; code ``shash42/Evaluating-Inexact-Unlearning``);
RURK App. B.3 (lr 1e-2, 10 epochs; k = last FC + last two residual blocks on ResNet-18).

"Layer" for any ``nn.Module``: the *weight layers* are the leaf modules that own parameters and
are not normalisation layers, in registration order (for the models we ship, that is forward
order). The last k layers are the parameterised leaves from the k-th last weight layer to the end,
so normalisation layers in between come along, as in Goel et al.'s ``resetFinalResnet`` (which
counts Conv/Linear layers and also unfreezes the BatchNorms it passes). For small_cnn
(conv, conv, fc, head) the default k = 2 is the two fully connected layers. A k larger than the
model has weight layers trains all of them (with a warning; ``stats["layers"]`` names them).

Everything registered before the first trainable layer runs in eval mode, so frozen BatchNorm
statistics and dropout stay fixed and the frozen part is bit-for-bit unchanged. Deviation: the
paper's CF-k keeps the frozen part's BatchNorm in train mode (statistics drift); we freeze it so
that "frozen" means unchanged.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from obliviate.config import opt
from obliviate.errors import ConfigError
from obliviate.unlearn.base import GradientConfig, GradientUnlearner, ce, register_unlearner
from obliviate.unlearn.space import FloatRange, SearchSpace

_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)


def last_k_layers(model: nn.Module, k: int) -> list[tuple[str, nn.Module]]:
    """(name, module) of the parameterised leaf modules that make up the last ``k`` layers."""
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    leaves = [
        (n, m)
        for n, m in model.named_modules()
        if not list(m.children()) and any(True for _ in m.parameters(recurse=False))
    ]
    weight_idx = [i for i, (_, m) in enumerate(leaves) if not isinstance(m, _NORM_TYPES)]
    if not weight_idx:
        raise ConfigError(f"{type(model).__name__} has no parameterised layer to train")
    if k > len(weight_idx):
        warnings.warn(
            f"k={k} exceeds the {len(weight_idx)} weight layers of {type(model).__name__}; "
            "training all of them",
            stacklevel=3,
        )
        k = len(weight_idx)
    start = 0 if k == len(weight_idx) else weight_idx[-k]
    return leaves[start:]


@dataclass
class CFkConfig(GradientConfig):
    k: int = opt(
        2, "Number of last weight layers to train (RURK: last FC + 2 residual blocks).", ge=1
    )
    epochs: int = opt(2, "Passes over the retain set (RURK / Goel et al.: 10).")
    lr: float = opt(0.01, "Learning rate (RURK: 1e-2).")

    def __post_init__(self) -> None:
        super().__post_init__()


@register_unlearner("cf_k", tags={"needs_retain"}, paper="Goel et al. 2022")
class CFk(GradientUnlearner):
    """Fine-tune the last k layers on the retain set with the rest of the model frozen."""

    Config = CFkConfig
    search_space: ClassVar[SearchSpace] = {
        "k": [1, 2, 3],
        "lr": FloatRange(0.01, 0.03, log=True),
        "epochs": [2, 5],
    }
    driver = "retain"
    uses_forget = False

    def setup(self, model, task):
        self._layers = layers = last_k_layers(model, self.config.k)
        self._layer_names = [n for n, _ in layers]
        train_ids = {id(m) for _, m in layers}
        leaves = [m for m in model.modules() if not list(m.children())]
        first = next(i for i, m in enumerate(leaves) if id(m) in train_ids)
        self._frozen_prefix = leaves[:first]
        self._train_params = {id(p) for _, m in layers for p in m.parameters(recurse=False)}
        self._saved_flags = [(p, p.requires_grad) for p in model.parameters()]
        for p in model.parameters():
            if id(p) not in self._train_params:
                p.requires_grad_(False)

    def trainable(self, model):
        return [p for p in model.parameters() if id(p) in self._train_params and p.requires_grad]

    def compute_loss(self, model, forget, retain):
        for m in self._frozen_prefix:
            m.eval()
        return ce(model, retain)

    def _unlearn(self, model, task):
        try:
            stats = super()._unlearn(model, task)
        finally:
            for p, flag in getattr(self, "_saved_flags", []):
                p.requires_grad_(flag)
            self._saved_flags = []
        return {**stats, "layers": self._layer_names}
