"""``simnpo`` (Simple NPO): reference-free, length-normalised negative preference optimisation.

Fan, Liu, Lin, Jia, Zhang, Mei & Liu, "Simplicity Prevails: Rethinking Negative Preference
Optimization for LLM Unlearning" (2024, arXiv 2410.07163). NPO's reference model is replaced by
a margin γ and the log-likelihood is divided by the answer length |y| (so long answers are not
over-weighted):

    L = −(2/β) · E_forget[ log σ(−(β/|y|) · log π_θ(y|x) − γ) ]  +  λ · NLL(retain)

OpenUnlearning writes the margin inside the scaling, σ(β (NLL/|y| − δ)): its δ is our γ/β.

Defaults: β = 2.5 (within the range the paper searches on TOFU) and γ = 0 (OpenUnlearning's
SimNPO class default δ = 0); retain weight λ = 1; AdamW, lr 1e-5, weight decay 0.01 and batch
32 as the TOFU paper's fine-tuning settings; 10 epochs. None were tuned here. Text tasks only
(:mod:`obliviate.unlearn.text_task`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch.nn.functional as F

from obliviate.config import opt
from obliviate.unlearn.base import GradientUnlearner, register_unlearner, task_loss
from obliviate.unlearn.methods._text_recipe import TextRecipeConfig
from obliviate.unlearn.space import FloatRange, SearchSpace
from obliviate.unlearn.text_task import sequence_nll


@dataclass
class SimNPOConfig(TextRecipeConfig):
    beta: float = opt(2.5, "Inverse temperature beta (see the module docstring).", gt=0, le=100)
    gamma: float = opt(
        0.0, "Reward margin gamma (0: no margin, as OpenUnlearning's default).", ge=0, le=100
    )


@register_unlearner(
    "simnpo", tags={"needs_retain", "text_only"}, paper="Fan et al. 2024, arXiv 2410.07163"
)
class SimNPO(GradientUnlearner):
    """Reference-free NPO on the length-normalised forget log-likelihood with a margin, plus a
    retain NLL term."""

    Config = SimNPOConfig
    search_space: ClassVar[SearchSpace] = {
        "lr": FloatRange(1e-5, 1e-4, log=True),
        "beta": [1.0, 2.5, 4.5],
        "epochs": [5, 10],
    }
    driver = "forget"

    def compute_loss(self, model, forget, retain):
        cfg: SimNPOConfig = self.config  # type: ignore[assignment]
        nll, n = sequence_nll(model, forget)
        mean_nll = nll / n.clamp_min(1)  # −log π_θ(y|x) / |y|
        loss = -(2.0 / cfg.beta) * F.logsigmoid(cfg.beta * mean_nll - cfg.gamma).mean()
        if cfg.retain_weight > 0 and retain is not None:
            loss = loss + cfg.retain_weight * task_loss(model, retain)
        return loss
