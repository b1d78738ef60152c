"""``noisy_gd`` (NGD): gradient descent on the retain set plus Gaussian weight noise every step.

RURK App. B.3 (after Chourasia & Shah 2023; Chien et al. 2024, Langevin unlearning):
``w_{t+1} = w_t − η g_t + ξ_t``, ``ξ_t ~ N(0, σ² I)``, with ``g_t`` the retain-batch gradient.
The forget set is never read.

Ambiguity resolved: RURK reports ``(σ, η) = (0.03, 0.1)`` for ResNet-18 on CIFAR (we read σ as
the noise std and η as the learning rate) without saying whether the noise scales with η. We
add ξ with a fixed per-coordinate std σ after each optimiser step, to every trainable parameter
(buffers such as BatchNorm statistics are left alone). σ = 0.03 per step destroys a small CNN
whose weights are ~0.02 (Fashion-MNIST, small_cnn, 2 epochs: retain accuracy 89 % → 39 %), so
our default σ is 1e-3; set ``sigma`` to reproduce other scales. The noise comes from its own
generator, seeded by the task seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from obliviate.config import opt
from obliviate.unlearn.base import GradientConfig, GradientUnlearner, ce, register_unlearner
from obliviate.unlearn.space import FloatRange, SearchSpace

_NOISE_SEED_OFFSET = 0x7015E


@dataclass
class NoisyGDConfig(GradientConfig):
    sigma: float = opt(
        1e-3, "Std of the Gaussian noise added to every weight after each step (RURK: 0.03).", ge=0
    )
    epochs: int = opt(2, "Passes over the retain set (RURK: 10 small CIFAR-5, 2 CIFAR-10).")
    lr: float = opt(0.01, "Learning rate eta (RURK: 0.1 with sigma 0.03 on ResNet-18).")

    def __post_init__(self) -> None:
        super().__post_init__()


@register_unlearner("noisy_gd", tags={"needs_retain"}, paper="RURK (Hsu et al. 2025) App. B.3")
class NoisyGD(GradientUnlearner):
    """Fine-tune on retain and add N(0, σ²) noise to the weights after every step."""

    Config = NoisyGDConfig
    search_space: ClassVar[SearchSpace] = {
        "lr": FloatRange(0.01, 0.03, log=True),
        "sigma": FloatRange(1e-4, 1e-3, log=True),
        "epochs": [2, 5],
    }
    driver = "retain"
    uses_forget = False

    def setup(self, model, task):
        self._noisy = [p for p in model.parameters() if p.requires_grad]
        dev = self._noisy[0].device if self._noisy else torch.device("cpu")
        self._noise_gen = torch.Generator(device=dev).manual_seed(task.seed + _NOISE_SEED_OFFSET)

    def compute_loss(self, model, forget, retain):
        return ce(model, retain)

    @torch.no_grad()
    def after_step(self, model, step):
        s = self.config.sigma
        if s <= 0:
            return
        for p in self._noisy:
            noise = torch.randn(
                p.shape, generator=self._noise_gen, dtype=p.dtype, device=self._noise_gen.device
            )
            p.add_(noise.to(p.device), alpha=s)
