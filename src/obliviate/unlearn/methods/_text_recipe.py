"""The recipe the language-model methods (npo, simnpo, idk) share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from obliviate.config import opt
from obliviate.unlearn.base import GradientConfig


@dataclass
class TextRecipeConfig(GradientConfig):
    """The language-model methods' shared recipe (TOFU's fine-tuning settings, Maini et al. 2024:
    AdamW, lr 1e-5, weight decay 0.01, batch 32; 10 epochs is this library's choice), plus the
    weight of a retain NLL term. Not tuned on SmolLM2 yet."""

    retain_weight: float = opt(1.0, "Weight of the retain NLL term (0 drops it).", ge=0, le=1e3)
    epochs: int = opt(10, "Passes over the forget set (not tuned here).")
    lr: float = opt(1e-5, "Learning rate (TOFU's fine-tuning recipe: 1e-5).")
    batch_size: int = opt(32, "Mini-batch size of forget and retain batches (TOFU: 32).")
    optimizer: Literal["sgd", "adam", "adamw"] = opt("adamw", "Optimiser (TOFU: AdamW).")
    weight_decay: float = opt(0.01, "Weight decay (TOFU: 0.01).")
    schedule: Literal["constant", "cosine"] = opt("constant", "LR schedule, stepped per batch.")


__all__ = ["TextRecipeConfig"]
