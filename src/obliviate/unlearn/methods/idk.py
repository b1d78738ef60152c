"""``idk``: fine-tune a language model to answer forget questions with a refusal.

TOFU (Maini et al., 2024, "TOFU: A Task of Fictitious Unlearning for LLMs", arXiv 2401.06121,
its "I don't know" preference baseline): the forget questions are paired with "I don't know"-style
answers and the model is fine-tuned on them (answer tokens only) together with the retain set:

    L = NLL(forget questions → refusal)  +  λ · NLL(retain)

Each forget question gets one of :data:`REFUSALS` (drawn per batch from a generator seeded by
the task seed; TOFU draws from a list of 100 such answers — ours is shorter and our own), ended
by the tokenizer's eos token, after the same chat-template prompt as the original answer.

Defaults: λ = 1; AdamW, lr 1e-5, weight decay 0.01 and batch 32 (the TOFU paper's fine-tuning
settings); 10 epochs over the forget set. None were tuned here. Text tasks built by
:func:`~obliviate.unlearn.text_task.make_text_task` only: the method needs the task's tokenizer
to write the refusals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from obliviate.errors import ConfigError
from obliviate.unlearn.base import GradientUnlearner, register_unlearner, task_loss
from obliviate.unlearn.methods._text_recipe import TextRecipeConfig
from obliviate.unlearn.space import FloatRange, SearchSpace
from obliviate.unlearn.text_task import IGNORE, pack_sequences, pad_id_of

#: Refusal answers the forget questions are retrained towards.
REFUSALS = (
    "I don't know.",
    "I'm not sure.",
    "I don't have that information.",
    "I have no knowledge of that.",
    "That is not something I know.",
    "I cannot answer that.",
    "I have no idea.",
    "Sorry, I don't know the answer.",
)
_SEED_OFFSET = 0x1D4


@dataclass
class IdkConfig(TextRecipeConfig):
    """The shared language-model recipe (:class:`TextRecipeConfig`) unchanged."""


@register_unlearner(
    "idk", tags={"needs_retain", "text_only"}, paper="Maini et al. 2024 (TOFU), arXiv 2401.06121"
)
class Idk(GradientUnlearner):
    """Fine-tune towards refusal answers ("I don't know.") on the forget questions, with a
    retain NLL term."""

    Config = IdkConfig
    search_space: ClassVar[SearchSpace] = {
        "lr": FloatRange(1e-5, 1e-4, log=True),
        "epochs": [5, 10],
    }
    driver = "forget"

    def setup(self, model, task):
        tok = getattr(task, "tokenizer", None)
        if tok is None:
            raise ConfigError(
                "method 'idk' needs the tokenizer of the text task to write refusals; build the "
                "task with make_text_task"
            )
        eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
        self._refusals = [
            list(tok(r, add_special_tokens=False)["input_ids"]) + eos for r in REFUSALS
        ]
        self._pad = pad_id_of(tok)
        self._pick = torch.Generator().manual_seed(task.seed + _SEED_OFFSET)

    def refusal_batch(self, forget: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """The forget batch with each answer replaced by a refusal (same prompt)."""
        x, y, mask = forget
        picks = torch.randint(len(self._refusals), (len(x),), generator=self._pick).tolist()
        rows = []
        for i, k in enumerate(picks):
            start = int((y[i] != IGNORE).nonzero()[0])  # the first answer token
            rows.append((x[i, :start].tolist(), self._refusals[k]))
        return tuple(t.to(x.device) for t in pack_sequences(rows, self._pad))

    def compute_loss(self, model, forget, retain):
        cfg: IdkConfig = self.config  # type: ignore[assignment]
        loss = task_loss(model, self.refusal_batch(forget))
        if cfg.retain_weight > 0 and retain is not None:
            loss = loss + cfg.retain_weight * task_loss(model, retain)
        return loss
