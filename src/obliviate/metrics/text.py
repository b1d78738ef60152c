"""Text metrics for language-model unlearning (TOFU / MUSE conventions; DESIGN.md "Language
models"). Pure functions: model-based ones run in ``eval`` mode under ``torch.no_grad`` and never
change the model; the rest take plain numbers or strings.

Papers: TOFU (Maini et al., 2024) for answer probability, ROUGE-L recall, truth ratio, forget
quality and model utility; MUSE (Shi et al., 2024, "MUSE: Machine Unlearning Six-Way Evaluation")
for verbatim memorisation and PrivLeak; LOSS (Yeom et al., 2018), zlib (Carlini et al., 2021,
"Extracting Training Data from Large Language Models"), Min-K % (Shi et al., 2024, "Detecting
Pretraining Data from Large Language Models") and Min-K %++ (Zhang et al., 2025, "Min-K%++:
Improved Baseline for Detecting Pre-Training Data from LLMs") for membership inference.

Conventions: a *membership score* is higher for text that looks trained on; MIA AUC is the
probability that a forget item scores above a holdout item (ties count half), so 0.5 = no
membership signal. Token log-probabilities cover the answer (target) tokens only, each predicted
from everything before it; prompts are tokenised with the tokenizer's special tokens, answers
without, and the two id lists are concatenated (the answer's boundary is exact).
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.stats import ks_2samp

from obliviate.errors import ConfigError
from obliviate.metrics._common import METRICS
from obliviate.models.lm import format_question

TOFU = "Maini et al., 2024, TOFU: A Task of Fictitious Unlearning for LLMs"
MUSE = "Shi et al., 2024, MUSE: Machine Unlearning Six-Way Evaluation for Language Models"

#: Min-K % and Min-K %++ use the lowest 40 % of token scores (DESIGN.md).
MIN_K = 0.4


# ------------------------------------------------------------------------------------------------
# model-based: token log-probabilities and greedy generation


@dataclass(frozen=True)
class TokenStats:
    """Per-target-token statistics of one sequence: ``logprob`` = log p(x_t | x_<t); ``mu`` and
    ``sigma`` = mean and std of log p(z | x_<t) over the vocabulary, z ~ p(· | x_<t) (Min-K %++)."""

    logprob: torch.Tensor
    mu: torch.Tensor | None = None
    sigma: torch.Tensor | None = None


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


def _check_pairs(prompts: Sequence[str], targets: Sequence[str]) -> None:
    if len(prompts) != len(targets):
        raise ConfigError(f"{len(prompts)} prompts but {len(targets)} targets")
    empty = [i for i, t in enumerate(targets) if not isinstance(t, str) or not t]
    if empty:
        raise ConfigError(f"targets must be non-empty strings; empty at positions {empty[:10]}")


def vocab_logprob_moments(logp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean μ and std σ of log p(z) for z ~ p, per row of log-probabilities ``logp`` (…, V):
    μ = Σ p log p, σ² = Σ p (log p − μ)² (Min-K %++'s calibration), in float64: the textbook
    E[x²] − μ² form cancels badly when the distribution is nearly flat."""
    logp = logp.double()
    prob = logp.exp()
    mu = (prob * logp).sum(-1)
    var = (prob * (logp - mu.unsqueeze(-1)).square()).sum(-1)
    return mu, var.sqrt()


@torch.no_grad()
def token_stats(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    targets: Sequence[str],
    *,
    batch_size: int = 8,
    distribution: bool = False,
) -> list[TokenStats]:
    """Log-probabilities of each ``target`` token given ``prompt`` + the target tokens before it,
    batched with right padding (padding never changes a result: positions and the attention mask
    are those of the unpadded sequence). ``distribution`` adds the vocabulary mean/std of log p
    (Min-K %++). A target token at position 0 (no prompt, no BOS) has no context and is skipped.
    """
    _check_pairs(prompts, targets)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    seqs: list[tuple[list[int], int]] = []
    for p, t in zip(prompts, targets, strict=True):
        p_ids = list(tokenizer(p)["input_ids"]) if p else []
        t_ids = list(tokenizer(t, add_special_tokens=not p)["input_ids"])
        start = max(len(p_ids), 1)
        seqs.append((p_ids + t_ids, start))
    was_training = model.training
    model.eval()
    dev = _device(model)
    out: list[TokenStats] = []
    try:
        for b in range(0, len(seqs), batch_size):
            chunk = seqs[b : b + batch_size]
            width = max(len(s) for s, _ in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, (s, _) in enumerate(chunk):
                ids[i, : len(s)] = torch.tensor(s)
                mask[i, : len(s)] = 1
            logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1)  # predicts tokens 1..width-1
            for i, (s, start) in enumerate(chunk):
                rows = torch.arange(start - 1, len(s) - 1, device=dev)
                tgt = ids[i, start:].to(dev)[: len(rows)]
                lp = logp[i, rows, tgt].cpu()
                mu = sigma = None
                if distribution:
                    mu, sigma = (x.cpu() for x in vocab_logprob_moments(logp[i, rows]))
                out.append(TokenStats(lp, mu, sigma))
    finally:
        model.train(was_training)
    return out


def answer_logprobs(
    model: Any,
    tokenizer: Any,
    questions: Sequence[str],
    answers: Sequence[str],
    *,
    batch_size: int = 8,
) -> list[torch.Tensor]:
    """Token log-probabilities of each answer given its question wrapped by
    :func:`~obliviate.models.lm.format_question` (answer tokens only; TOFU's evaluation)."""
    prompts = [format_question(tokenizer, q) for q in questions]
    stats = token_stats(model, tokenizer, prompts, answers, batch_size=batch_size)
    return [s.logprob for s in stats]


@torch.no_grad()
def greedy_generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 32,
    batch_size: int = 8,
) -> list[str]:
    """Greedy continuations of ``prompts`` (new text only, special tokens dropped), batched with
    left padding; deterministic: the same model and prompts give the same strings."""
    if max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    side = tokenizer.padding_side
    was_training = model.training
    model.eval()
    dev = _device(model)
    out: list[str] = []
    try:
        tokenizer.padding_side = "left"
        for b in range(0, len(prompts), batch_size):
            enc = tokenizer(list(prompts[b : b + batch_size]), return_tensors="pt", padding=True)
            gen = model.generate(
                input_ids=enc["input_ids"].to(dev),
                attention_mask=enc["attention_mask"].to(dev),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
            )
            new = gen[:, enc["input_ids"].shape[1] :]
            out.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return out


def answer_questions(
    model: Any,
    tokenizer: Any,
    questions: Sequence[str],
    *,
    max_new_tokens: int = 32,
    batch_size: int = 8,
) -> list[str]:
    """Greedy answers to ``questions`` asked through the chat template (stripped)."""
    prompts = [format_question(tokenizer, q) for q in questions]
    gens = greedy_generate(
        model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size
    )
    return [g.strip() for g in gens]


# ------------------------------------------------------------------------------------------------
# probabilities and the truth ratio (TOFU)


def _mean_lp(lp: torch.Tensor | Sequence[float]) -> float:
    t = torch.as_tensor(lp, dtype=torch.float64)
    if t.numel() == 0:
        raise ConfigError("no token log-probabilities (empty answer)")
    return float(t.mean())


@METRICS.register(
    "answer_probability",
    higher_is_better=True,
    description="TOFU probability P(a|q)^(1/|a|) of an answer given its question",
    reference=TOFU,
)
def answer_probability(logprobs: torch.Tensor | Sequence[float]) -> float:
    """TOFU "Probability": P(a | q)^(1/|a|) = exp(mean token log-prob). Higher is better on
    retain (the model knows the answer); on the forget set lower means more forgotten."""
    return math.exp(_mean_lp(logprobs))


def option_probability(correct: torch.Tensor, wrong: Sequence[torch.Tensor]) -> float:
    """TOFU's normalised correct-option probability (real authors / world facts): the correct
    answer's length-normalised probability over the sum of all options'. Higher is better."""
    probs = [answer_probability(correct)] + [answer_probability(w) for w in wrong]
    return probs[0] / sum(probs)


@METRICS.register(
    "truth_ratio",
    higher_is_better=None,
    description="TOFU truth ratio R (perturbed vs paraphrased answers); compared with gold",
    reference=TOFU,
)
def truth_ratio(
    paraphrased: torch.Tensor | Sequence[float],
    perturbed: Sequence[torch.Tensor | Sequence[float]],
    *,
    mean: str = "geometric",
) -> float:
    """TOFU truth ratio R = (mean over perturbed answers of P(â|q)^(1/|â|)) / P(ã|q)^(1/|ã|),
    ã the paraphrased answer. ``mean="geometric"`` (default) averages in log space, as TOFU's
    and OpenUnlearning's code do; ``"arithmetic"`` is the paper's formula. R < 1: the model
    prefers the true (paraphrased) answer. Neither direction is "better" in itself: forget
    quality compares R's distribution to gold's; :func:`truth_ratio_score` is higher-is-better.
    """
    if not perturbed:
        raise ConfigError("truth_ratio needs at least one perturbed answer")
    para = _mean_lp(paraphrased)
    pert = [_mean_lp(p) for p in perturbed]
    if mean == "geometric":
        return math.exp(float(np.mean(pert)) - para)
    if mean == "arithmetic":
        return float(np.mean(np.exp(pert))) / math.exp(para)
    raise ConfigError(f"truth_ratio: mean must be 'geometric' or 'arithmetic', got {mean!r}")


@METRICS.register(
    "truth_ratio_score",
    higher_is_better=True,
    description="TOFU retain statistic max(0, 1 - R)",
    reference=TOFU,
)
def truth_ratio_score(r: float) -> float:
    """TOFU's retain-side truth-ratio statistic max(0, 1 − R); higher is better (in [0, 1])."""
    return max(0.0, 1.0 - r)


# ------------------------------------------------------------------------------------------------
# forget quality, model utility


def ks_statistic(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sample Kolmogorov–Smirnov statistic D = sup_x |F_a(x) − F_b(x)| over both empirical
    CDFs (right-continuous), evaluated at every observed value."""
    x = np.sort(np.asarray(a, dtype=np.float64))
    y = np.sort(np.asarray(b, dtype=np.float64))
    if x.size == 0 or y.size == 0:
        raise ConfigError("ks_statistic needs two non-empty samples")
    grid = np.concatenate([x, y])
    fa = np.searchsorted(x, grid, side="right") / x.size
    fb = np.searchsorted(y, grid, side="right") / y.size
    return float(np.max(np.abs(fa - fb)))


@METRICS.register(
    "forget_quality",
    higher_is_better=True,
    description="KS-test p-value of unlearned vs gold truth ratios on the forget set",
    reference=TOFU,
)
def forget_quality(r_unlearned: Sequence[float], r_gold: Sequence[float]) -> float:
    """TOFU forget quality: p-value of the two-sided two-sample KS test between the unlearned and
    the gold model's truth ratios on the forget set (scipy's ``ks_2samp``, exact for small
    samples). Higher is better; ≥ 0.05 = not distinguishable from gold. Meaningful with ≥ 40
    forget questions (TOFU's forget01)."""
    ks_statistic(r_unlearned, r_gold)  # validates both samples
    return float(ks_2samp(np.asarray(r_unlearned), np.asarray(r_gold)).pvalue)


def harmonic_mean(values: Sequence[float]) -> float:
    """Harmonic mean of non-negative values; 0 when any value is 0."""
    v = [float(x) for x in values]
    if not v:
        raise ConfigError("harmonic_mean of no values")
    bad = [x for x in v if not (x >= 0.0 and math.isfinite(x))]
    if bad:
        raise ConfigError(f"harmonic_mean needs finite values >= 0; got {bad}")
    if min(v) == 0.0:
        return 0.0
    return len(v) / sum(1.0 / x for x in v)


@METRICS.register(
    "model_utility",
    higher_is_better=True,
    description="harmonic mean of retain/world-facts probability, ROUGE-L, truth ratio",
    reference=TOFU,
)
def model_utility(retain: dict[str, float], world: dict[str, float] | None = None) -> float:
    """TOFU model utility (DESIGN.md): harmonic mean of ``retain["probability"]``,
    ``retain["rouge_l"]``, ``retain["truth_ratio_score"]`` and, when given,
    ``world["option_probability"]`` and ``world["rouge_l"]`` (each a mean over its set). Higher
    is better; in [0, 1]."""
    keys = [("retain", retain, k) for k in ("probability", "rouge_l", "truth_ratio_score")]
    if world is not None:
        keys += [("world", world, k) for k in ("option_probability", "rouge_l")]
    missing = [f"{where}[{k!r}]" for where, d, k in keys if k not in d]
    if missing:
        raise ConfigError(f"model_utility: missing {missing}")
    return harmonic_mean([d[k] for _, d, k in keys])


# ------------------------------------------------------------------------------------------------
# string metrics


def _words(text: str) -> list[str]:
    """Lower-cased alphanumeric tokens (punctuation counts as a separator), as ``rouge_score``'s
    default tokenizer without stemming."""
    return re.sub(r"[^\w]+", " ", text.lower()).split()


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token sequences (dynamic programming)."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, start=1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


@METRICS.register(
    "rouge_l",
    higher_is_better=True,
    description="ROUGE-L (LCS) recall of a generation against the reference answer",
    reference="Lin, 2004, ROUGE; TOFU uses its recall",
)
def rouge_l(prediction: str, reference: str, kind: str = "recall") -> float:
    """ROUGE-L of ``prediction`` against ``reference`` over lower-cased word tokens:
    ``"recall"`` = LCS / |reference| (TOFU), ``"precision"`` = LCS / |prediction|, ``"f1"`` their
    harmonic mean (MUSE VerbMem). Higher means closer to the reference; 0 for empty text."""
    p, r = _words(prediction), _words(reference)
    lcs = lcs_length(p, r)
    rec = lcs / len(r) if r else 0.0
    prec = lcs / len(p) if p else 0.0
    if kind == "recall":
        return rec
    if kind == "precision":
        return prec
    if kind == "f1":
        return 0.0 if lcs == 0 else 2 * prec * rec / (prec + rec)
    raise ConfigError(f"rouge_l: kind must be 'recall', 'precision' or 'f1', got {kind!r}")


def normalise_text(text: str) -> str:
    """Lower case, punctuation removed, whitespace collapsed (for answer accuracy)."""
    return " ".join(_words(text))


@METRICS.register(
    "answer_accuracy",
    higher_is_better=True,
    description="share of greedy answers containing the key fact (on forget: lower)",
    reference="DESIGN.md (matched forgetting on text)",
)
def answer_accuracy(generations: Sequence[str], facts: Sequence[str]) -> float:
    """Share of generations that contain their key fact, case- and punctuation-insensitive
    (whole-word match). Higher means the facts are known (lower on the forget set = forgotten).
    """
    if len(generations) != len(facts):
        raise ConfigError(f"{len(generations)} generations but {len(facts)} facts")
    if not facts:
        raise ConfigError("answer_accuracy of no questions")
    hits = 0
    for g, f in zip(generations, facts, strict=True):
        nf = normalise_text(f)
        if not nf:
            raise ConfigError(f"key fact {f!r} has no words")
        hits += f" {nf} " in f" {normalise_text(g)} "
    return hits / len(facts)


@METRICS.register(
    "repeated_ngram_rate",
    higher_is_better=False,
    description="share of repeated word n-grams in a generation (fluency)",
    reference="Holtzman et al., 2020, The Curious Case of Neural Text Degeneration",
)
def repeated_ngram_rate(text: str, n: int = 3) -> float:
    """Share of word n-grams that repeat an earlier n-gram of the same text (0 = no repetition,
    → 1 for a loop). Lower is better (fluency)."""
    w = _words(text)
    grams = [tuple(w[i : i + n]) for i in range(len(w) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def is_degenerate(text: str, *, n: int = 3, max_repeat: float = 0.5) -> bool:
    """Flag a generation that degenerated: no words at all, or more than ``max_repeat`` of its
    word ``n``-grams repeated (the loops that over-unlearned models produce)."""
    return not _words(text) or repeated_ngram_rate(text, n) > max_repeat


# ------------------------------------------------------------------------------------------------
# membership inference on text


def loss_score(logprobs: torch.Tensor | Sequence[float]) -> float:
    """LOSS attack (Yeom et al., 2018): mean token log-prob (= −loss). Membership score."""
    return _mean_lp(logprobs)


def zlib_score(logprobs: torch.Tensor | Sequence[float], text: str) -> float:
    """zlib attack (Carlini et al., 2021), MUSE's form: mean token log-prob divided by the zlib-
    compressed length of ``text`` in bytes. Membership score."""
    z = len(zlib.compress(text.encode("utf-8")))
    return _mean_lp(logprobs) / z


def _lowest_k_mean(values: torch.Tensor, k: float) -> float:
    if not 0.0 < k <= 1.0:
        raise ConfigError(f"k must lie in (0, 1], got {k}")
    v = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    if v.numel() == 0:
        raise ConfigError("no token scores")
    m = max(1, int(v.numel() * k))
    return float(torch.sort(v).values[:m].mean())


def min_k_score(logprobs: torch.Tensor | Sequence[float], k: float = MIN_K) -> float:
    """Min-K % (Shi et al., 2024): mean of the lowest ⌊k·n⌋ (≥ 1) token log-probs. Membership
    score."""
    return _lowest_k_mean(torch.as_tensor(logprobs), k)


def min_k_plus_plus_score(stats: TokenStats, k: float = MIN_K) -> float:
    """Min-K %++ (Zhang et al., 2025): per token (log p(x_t) − μ_t) / σ_t with μ_t, σ_t the mean
    and std of log p over the vocabulary at that position; mean of the lowest k of them.
    Membership score. Needs :func:`token_stats` with ``distribution=True``."""
    if stats.mu is None or stats.sigma is None:
        raise ConfigError("min_k_plus_plus_score needs token_stats(..., distribution=True)")
    z = (stats.logprob.double() - stats.mu.double()) / stats.sigma.double().clamp_min(1e-12)
    return _lowest_k_mean(z, k)


@METRICS.register(
    "text_mia_auc",
    higher_is_better=None,
    description="AUC of membership scores, forget vs holdout; ideal = gold's",
    reference=MUSE,
)
def mia_auc(members: Sequence[float], nonmembers: Sequence[float]) -> float:
    """ROC AUC of membership scores: P(member score > non-member score), ties counted half
    (Mann–Whitney U / (n m)). 0.5 = no signal; on forget vs holdout, the gold model's AUC is the
    reference (see :func:`priv_leak`)."""
    a = np.asarray(members, dtype=np.float64)
    b = np.asarray(nonmembers, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        raise ConfigError("mia_auc needs members and non-members")
    greater = (a[:, None] > b[None, :]).sum()
    ties = (a[:, None] == b[None, :]).sum()
    return float((greater + 0.5 * ties) / (a.size * b.size))


@METRICS.register(
    "priv_leak",
    higher_is_better=None,
    description="(AUC_unlearned - AUC_gold) / AUC_gold x 100; ideal 0",
    reference=MUSE,
)
def priv_leak(auc_unlearned: float, auc_gold: float) -> float:
    """MUSE PrivLeak = (AUC_unlearned − AUC_gold) / AUC_gold × 100 (on Min-K %++ scores, forget
    vs holdout). Closer to 0 is better: > 0 under-unlearned (leaks), < 0 over-unlearned."""
    if auc_gold <= 0:
        raise ConfigError(f"priv_leak: AUC_gold must be > 0, got {auc_gold}")
    return (auc_unlearned - auc_gold) / auc_gold * 100.0


def mia_scores(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    targets: Sequence[str],
    *,
    k: float = MIN_K,
    batch_size: int = 8,
) -> dict[str, list[float]]:
    """The four membership scores (``loss``, ``zlib``, ``min_k``, ``min_k_pp``) of each target
    given its prompt (use ``""`` for plain text, formatted questions for QA pairs)."""
    stats = token_stats(
        model, tokenizer, prompts, targets, batch_size=batch_size, distribution=True
    )
    return {
        "loss": [loss_score(s.logprob) for s in stats],
        "zlib": [zlib_score(s.logprob, t) for s, t in zip(stats, targets, strict=True)],
        "min_k": [min_k_score(s.logprob, k) for s in stats],
        "min_k_pp": [min_k_plus_plus_score(s, k) for s in stats],
    }


# ------------------------------------------------------------------------------------------------
# verbatim memorisation (MUSE)


@METRICS.register(
    "verbatim_memorisation",
    higher_is_better=None,
    description="ROUGE-L F1 of the greedy continuation of a text's first half",
    reference=MUSE,
)
def verbatim_memorisation(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_new_tokens: int | None = None,
    batch_size: int = 8,
) -> list[float]:
    """MUSE VerbMem: for each text, split its tokens in half, greedily continue the first half
    for as many tokens as the second half has (or ``max_new_tokens`` for all), and score ROUGE-L
    F1 of the continuation against the second half (MUSE / OpenUnlearning ``rougeL_f1``).
    Higher = more memorised (lower on the forget set is the goal)."""
    prompts, refs, lens = [], [], []
    for i, t in enumerate(texts):
        ids = list(tokenizer(t, add_special_tokens=False)["input_ids"])
        if len(ids) < 2:
            raise ConfigError(f"text {i} has fewer than 2 tokens; cannot split it in half")
        h = len(ids) // 2
        prompts.append(tokenizer.decode(ids[:h]))
        refs.append(tokenizer.decode(ids[h:]))
        lens.append(len(ids) - h)
    n = max_new_tokens if max_new_tokens is not None else max(lens)
    conts = greedy_generate(model, tokenizer, prompts, max_new_tokens=n, batch_size=batch_size)
    out = []
    for c, r, m in zip(conts, refs, lens, strict=True):  # each text: as many tokens as its half
        ids = list(tokenizer(c, add_special_tokens=False)["input_ids"])
        cut = tokenizer.decode(ids[: min(m, n)]) if max_new_tokens is None else c
        out.append(rouge_l(cut, r, kind="f1"))
    return out
