"""``npo`` (Negative Preference Optimization) for causal language models.

Zhang, Lin, Bai & Mei, "Negative Preference Optimization: From Catastrophic Collapse to Effective
Unlearning" (COLM 2024, arXiv 2404.05868). DPO with the forget answer as the only, losing
response, against a frozen reference copy of the input model:

    L = −(2/β) · E_forget[ log σ(−β · (log π_θ(y|x) − log π_ref(y|x))) ]  +  λ · NLL(retain)

where log π(y|x) is the summed log-likelihood of the answer tokens. As β → 0 the forget term
becomes gradient ascent; unlike it, the term is bounded below, so training slows down once the
forget answers are unlikely (the paper's argument against GA's collapse). The retain NLL term is
the paper's "NPO+RT" variant and OpenUnlearning's NPO (a GradDiff subclass, retain loss NLL).

Defaults: β = 0.1 (the paper's TOFU value); retain weight λ = 1; AdamW, lr 1e-5, weight decay
0.01 and batch 32, the fine-tuning settings of the TOFU paper (Maini et al., 2024); 10 epochs over
the forget set. None were tuned here; small random models (the tests' tiny_llama) need a larger lr.
Text tasks only (:mod:`obliviate.unlearn.text_task`): a classifier has no answer sequence.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from obliviate.config import opt
from obliviate.unlearn.base import GradientUnlearner, register_unlearner, task_loss
from obliviate.unlearn.methods._text_recipe import TextRecipeConfig
from obliviate.unlearn.space import FloatRange, SearchSpace
from obliviate.unlearn.text_task import sequence_nll


@dataclass
class NPOConfig(TextRecipeConfig):
    beta: float = opt(0.1, "Inverse temperature beta of the NPO loss (paper: 0.1).", gt=0, le=100)
    retain_weight: float = opt(
        1.0, "Weight of the retain NLL term (NPO+RT; 0 drops it).", ge=0, le=1e3
    )


@register_unlearner(
    "npo", tags={"needs_retain", "text_only"}, paper="Zhang et al. 2024 (COLM), arXiv 2404.05868"
)
class NPO(GradientUnlearner):
    """Negative preference optimisation on the forget answers against a frozen reference copy of
    the input model, plus a retain NLL term."""

    Config = NPOConfig
    search_space: ClassVar[SearchSpace] = {
        "lr": FloatRange(1e-5, 1e-4, log=True),
        "beta": [0.05, 0.1, 0.5],
        "epochs": [5, 10],
    }
    driver = "forget"

    def setup(self, model, task):
        self._ref = copy.deepcopy(model).eval().requires_grad_(False)

    def _unlearn(self, model, task) -> dict[str, Any]:
        try:
            return super()._unlearn(model, task)
        finally:
            self._ref = None  # the frozen copy is not kept after the call

    def compute_loss(self, model, forget, retain):
        cfg: NPOConfig = self.config  # type: ignore[assignment]
        nll, _ = sequence_nll(model, forget)
        with torch.no_grad():
            ref_nll, _ = sequence_nll(self._ref, forget)
        log_ratio = ref_nll - nll  # log π_θ(y|x) − log π_ref(y|x)
        loss = -(2.0 / cfg.beta) * F.logsigmoid(-cfg.beta * log_ratio).mean()
        if cfg.retain_weight > 0 and retain is not None:
            loss = loss + cfg.retain_weight * task_loss(model, retain)
        return loss
