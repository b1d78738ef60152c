"""``finetune`` (GD / FT): keep training on the retain set only.

Baseline of every comparison (Golatkar et al. 2020; Jia et al. 2023 "FT"; RURK App. B.3 "GD"):
catastrophic forgetting of the forget set through continued training on the rest. The worked
example of ``docs/adding-a-method.md``. On a text task (a causal language model) the loss is the
mean answer-token cross-entropy on retain (:func:`~obliviate.unlearn.base.task_loss`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from obliviate.config import opt
from obliviate.unlearn.base import GradientConfig, GradientUnlearner, ce, register_unlearner
from obliviate.unlearn.space import FloatRange, SearchSpace


@dataclass
class FinetuneConfig(GradientConfig):
    epochs: int = opt(5, "Epochs over the retain set (SalUn uses 10 on CIFAR-10).")
    lr: float = opt(0.01, "Learning rate (SalUn's FT: 0.01-0.1).")


@register_unlearner(
    "finetune",
    tags={"needs_retain", "supports_text"},
    paper="Golatkar et al. 2020; Jia et al. 2023",
)
class Finetune(GradientUnlearner):
    """Minimise CE on the retain set; the forget set is never read."""

    Config = FinetuneConfig
    search_space: ClassVar[SearchSpace] = {
        "lr": FloatRange(0.01, 0.1, log=True),
        "epochs": [2, 5, 10],
    }
    driver = "retain"
    uses_forget = False

    def compute_loss(self, model, forget, retain):
        return ce(model, retain)
