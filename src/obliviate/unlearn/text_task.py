"""Text unlearning tasks for causal language models, and the losses every method shares on them.

A text task is an :class:`~obliviate.unlearn.UnlearnTask` whose parts are *text sets*
(:class:`~obliviate.unlearn.TensorSet` with an attention mask): ``x`` holds the right-padded token
ids of ``prompt + answer + eos`` (N, L), ``y`` the labels (N, L) — the answer and eos token ids,
-100 on prompt and padding, so every loss covers answer tokens only (TOFU's convention, DESIGN.md
"Language models") — and ``mask`` the attention mask. The prompt is :func:`format_question` (the
tokenizer's chat template), tokenised with special tokens; the answer without, so the answer's
boundary is exact (as :func:`obliviate.metrics.text.token_stats`). Sample ids are the positions
of the QA pairs in the dataset (:meth:`QADataset.index_of`).

:func:`answer_token_ce` is the loss of the fine-tuning family on a text batch: the mean
cross-entropy of the next-token prediction over every answer token of the batch (shifted by one:
position t predicts token t + 1). :func:`sequence_nll` gives it per sequence (sum and token count)
for the preference-style losses (NPO, SimNPO).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from obliviate.data.qa import QADataset
from obliviate.errors import ConfigError, RequestError
from obliviate.models.lm import CausalLM, format_question
from obliviate.unlearn.task import TensorSet, UnlearnTask

#: Label of tokens no loss is computed on (prompt, padding); PyTorch's and HF's ignore index.
IGNORE = -100


@dataclass
class TextTask(UnlearnTask):
    """An :class:`UnlearnTask` over text sets, with the tokenizer that built them (methods that
    write new answers, such as ``idk``, need it) and the sequence cap ``max_length``."""

    tokenizer: Any = None
    max_length: int = 0


def pad_id_of(tokenizer: Any) -> int:
    """The tokenizer's pad id (its eos id when it has no pad token)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ConfigError(
            f"tokenizer {type(tokenizer).__name__} has neither a pad nor an eos token"
        )
    return int(pad)


def pack_sequences(
    rows: Sequence[tuple[list[int], list[int]]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad ``(prompt_ids, answer_ids)`` rows into ``(x, y, mask)`` (int64, width = the
    longest row): ``y`` is the answer ids on answer positions and :data:`IGNORE` elsewhere."""
    width = max(len(p) + len(a) for p, a in rows)
    x = torch.full((len(rows), width), pad_id, dtype=torch.long)
    y = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (p, a) in enumerate(rows):
        n = len(p) + len(a)
        x[i, :n] = torch.tensor(p + a, dtype=torch.long)
        y[i, len(p) : n] = torch.tensor(a, dtype=torch.long)
        mask[i, :n] = 1
    return x, y, mask


def encode_qa(
    tokenizer: Any,
    questions: Sequence[str],
    answers: Sequence[str],
    max_length: int,
    names: Sequence[str] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tokenise QA pairs as ``(x, y, mask)`` (see the module docstring). A sequence longer than
    ``max_length`` loses the end of its answer; one whose answer would lose every token raises
    :class:`ConfigError` naming the pair (``names``, else its position) and ``max_length``."""
    if len(questions) != len(answers):
        raise ConfigError(f"{len(questions)} questions but {len(answers)} answers")
    if not questions:
        raise ConfigError("encode_qa: no QA pairs to encode")
    if max_length < 2:
        raise ConfigError(f"max_length must be >= 2, got {max_length}")
    eos = tokenizer.eos_token_id
    rows = []
    for i, (q, a) in enumerate(zip(questions, answers, strict=True)):
        p_ids = list(tokenizer(format_question(tokenizer, q))["input_ids"])
        a_ids = list(tokenizer(a, add_special_tokens=False)["input_ids"])
        a_ids += [eos] if eos is not None else []
        keep = max_length - len(p_ids)
        if keep < 1:
            who = names[i] if names is not None else f"pair {i}"
            raise ConfigError(
                f"max_length={max_length} leaves no answer token for {who!r} (its prompt has "
                f"{len(p_ids)} tokens); raise max_length"
            )
        rows.append((p_ids, a_ids[:keep]))
    return pack_sequences(rows, pad_id_of(tokenizer))


def text_set(
    lm: CausalLM | Any, dataset: QADataset, qa_ids: Sequence[str], max_length: int
) -> TensorSet:
    """The text set of the QA pairs ``qa_ids`` of ``dataset`` (ids = their positions)."""
    tok = lm.tokenizer if isinstance(lm, CausalLM) else lm
    by_id = {p.id: p for p in dataset.pairs}
    idx = dataset.index_of(qa_ids)
    pairs = [by_id[i] for i in qa_ids]
    if not pairs:
        return TensorSet(
            torch.zeros(0, 1, dtype=torch.long),
            torch.zeros(0, 1, dtype=torch.long),
            torch.zeros(0, dtype=torch.long),
            torch.zeros(0, 1, dtype=torch.long),
        )
    x, y, mask = encode_qa(
        tok, [p.question for p in pairs], [p.answer for p in pairs], max_length, list(qa_ids)
    )
    return TensorSet(x, y, torch.tensor(idx, dtype=torch.long), mask)


def make_text_task(
    lm: CausalLM,
    dataset: QADataset,
    forget_ids: Sequence[str],
    retain_ids: Sequence[str] | None = None,
    *,
    seed: int = 0,
    max_length: int = 64,
    device: str = "cpu",
    reserve_ids: Sequence[str] | None = None,
    val_ids: Sequence[str] | None = None,
) -> TextTask:
    """A text task forgetting the QA pairs ``forget_ids`` of ``dataset`` from ``lm``.

    ``retain_ids`` default to the dataset's other trained pairs. The request is checked as
    :meth:`QADataset.request` does (empty, unknown ids, ids of holdout or reserve people are
    refused with :class:`RequestError`), and the task as :class:`UnlearnTask` does (duplicate
    forget ids, forget ∩ retain / reserve). ``reserve_ids`` and ``val_ids`` are optional parts.
    """
    forget_ids = list(forget_ids)
    dataset.request(ids=forget_ids)  # validation only: it de-duplicates, the task must not
    if retain_ids is None:
        drop = set(forget_ids)
        retain_ids = [p.id for p in dataset.pairs_of("trained") if p.id not in drop]

    def part(ids: Sequence[str] | None) -> TensorSet | None:
        return None if ids is None else text_set(lm, dataset, list(ids), max_length)

    return TextTask(
        forget=text_set(lm, dataset, forget_ids, max_length),
        _retain=part(retain_ids),
        _reserve=part(reserve_ids),
        val=part(val_ids),
        num_classes=len(lm.tokenizer),
        seed=seed,
        device=device,
        tokenizer=lm.tokenizer,
        max_length=max_length,
    )


# ------------------------------------------------------------------------------------- losses


def lm_logits(model: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Next-token logits (N, L, V) of a Hugging Face causal LM on a padded batch."""
    out = model(input_ids=x, attention_mask=mask)
    return out.logits if hasattr(out, "logits") else out


def _token_ce(model: nn.Module, batch: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-position cross-entropy (N, L-1) of the shifted prediction; 0 where not an answer."""
    x, y, mask = batch
    logits = lm_logits(model, x, mask)[:, :-1].float()
    return F.cross_entropy(logits.transpose(1, 2), y[:, 1:], ignore_index=IGNORE, reduction="none")


def sequence_nll(
    model: nn.Module, batch: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sequence: the summed answer-token negative log-likelihood −log π(y|x) (N,) and the
    number of answer tokens (N,)."""
    nll = _token_ce(model, batch).sum(-1)
    return nll, (batch[1][:, 1:] != IGNORE).sum(-1)


def answer_token_ce(model: nn.Module, batch: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy over every answer token of a text batch ``(x, y, mask)``
    (TOFU's fine-tuning loss); raises if the batch has no answer token."""
    n = int((batch[1][:, 1:] != IGNORE).sum())
    if n == 0:
        raise RequestError("a text batch has no answer tokens (all labels are -100)")
    return _token_ce(model, batch).sum() / n


@torch.no_grad()
def text_loss(model: nn.Module, part: TensorSet, batch_size: int = 16) -> float:
    """Mean answer-token cross-entropy of ``model`` over a whole text set (eval mode, restored
    afterwards): the ``loss_fn`` of :func:`obliviate.testing.check_unlearner` for text."""
    if not part.is_text:
        raise ConfigError("text_loss needs a text set (a TensorSet with an attention mask)")
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for i in range(0, len(part), batch_size):
            b = part.batch(torch.arange(i, min(i + batch_size, len(part))), dev)
            nll, n = sequence_nll(model, b)
            total, count = total + float(nll.sum()), count + int(n.sum())
    finally:
        model.train(was)
    if count == 0:
        raise RequestError("text_loss: the set has no answer tokens")
    return total / count


@torch.no_grad()
def token_accuracy(model: nn.Module, part: TensorSet, batch_size: int = 16) -> float:
    """Percent of answer tokens the model's argmax predicts (teacher forcing; eval mode, restored
    afterwards): the "forget accuracy" of a text set."""
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    hit, count = 0, 0
    try:
        for i in range(0, len(part), batch_size):
            x, y, mask = part.batch(torch.arange(i, min(i + batch_size, len(part))), dev)
            pred = lm_logits(model, x, mask)[:, :-1].argmax(-1)
            tgt = y[:, 1:]
            keep = tgt != IGNORE
            hit, count = hit + int((pred[keep] == tgt[keep]).sum()), count + int(keep.sum())
    finally:
        model.train(was)
    return 100.0 * hit / max(1, count)
