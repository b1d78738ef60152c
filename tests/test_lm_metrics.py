"""Text metrics against hand-computed cases (no metric library), and the model-based helpers on
a random tiny_llama."""

from __future__ import annotations

import math
import zlib

import pytest
import torch

from obliviate.errors import ConfigError
from obliviate.metrics import text as T

# ------------------------------------------------------------------------------------------------
# hand-computed cases (no model)


def test_lcs_and_rouge_l_hand_cases():
    assert T.lcs_length(list("abcde"), list("ace")) == 3
    a, b = ["the", "cat", "sat", "on", "the", "mat"], ["the", "mat", "sat"]
    assert T.lcs_length(a, b) == 2  # "the sat" or "the mat": mat/sat order differs
    assert T.rouge_l("The cat sat on the mat.", "the mat sat") == pytest.approx(2 / 3)
    assert T.rouge_l("Paris!", "paris") == 1.0
    assert T.rouge_l("", "paris") == 0.0
    assert T.rouge_l("x", "") == 0.0
    # pred a b c d vs ref a c: LCS 2, recall 1, precision 1/2, F1 2/3
    assert T.rouge_l("a b c d", "a c", kind="precision") == 0.5
    assert T.rouge_l("a b c d", "a c", kind="f1") == pytest.approx(2 / 3)
    with pytest.raises(ConfigError, match="kind"):
        T.rouge_l("a", "a", kind="fmeasure")


def test_ks_statistic_hand_ecdf_and_forget_quality():
    # ECDFs at 1, 2, 2.5, 3, 4: |1/3-0|, |2/3-0|, |2/3-1/2|, |1-1/2|, |1-1| -> max 2/3
    assert T.ks_statistic([1, 2, 3], [2.5, 4]) == pytest.approx(2 / 3)
    assert T.ks_statistic([1, 2], [1, 2]) == 0.0
    assert T.ks_statistic([0, 0, 0], [1, 1]) == 1.0
    same = [0.1, 0.4, 0.9, 1.3]
    assert T.forget_quality(same, same) == pytest.approx(1.0)
    far = T.forget_quality([0.01 * i for i in range(40)], [10 + 0.01 * i for i in range(40)])
    assert far < 1e-10
    with pytest.raises(ConfigError, match="non-empty"):
        T.forget_quality([], [1.0])


def test_probability_truth_ratio_and_scores_hand_cases():
    assert T.answer_probability([math.log(0.5), math.log(0.125)]) == pytest.approx(0.25)
    assert T.option_probability(
        torch.tensor([math.log(0.5)]), [torch.tensor([math.log(0.25)])] * 2
    ) == pytest.approx(0.5)
    para, pert = [-1.0, -1.0], [[-2.0], [-3.0, -3.0]]
    assert T.truth_ratio(para, pert) == pytest.approx(math.exp(-1.5))
    arith = (math.exp(-2) + math.exp(-3)) / 2 / math.exp(-1)
    assert T.truth_ratio(para, pert, mean="arithmetic") == pytest.approx(arith)
    assert T.truth_ratio_score(0.25) == 0.75
    assert T.truth_ratio_score(2.0) == 0.0
    with pytest.raises(ConfigError, match="perturbed"):
        T.truth_ratio(para, [])
    with pytest.raises(ConfigError, match="empty"):
        T.answer_probability([])


def test_harmonic_mean_and_model_utility():
    assert T.harmonic_mean([1.0, 0.5]) == pytest.approx(2 / 3)
    assert T.harmonic_mean([0.9, 0.0]) == 0.0
    retain = {"probability": 0.5, "rouge_l": 1.0, "truth_ratio_score": 0.5}
    assert T.model_utility(retain) == pytest.approx(3 / (2 + 1 + 2))
    world = {"option_probability": 1.0, "rouge_l": 1.0}
    assert T.model_utility(retain, world) == pytest.approx(5 / (2 + 1 + 2 + 1 + 1))
    with pytest.raises(ConfigError, match="world\\['rouge_l'\\]"):
        T.model_utility(retain, {"option_probability": 1.0})
    with pytest.raises(ConfigError, match=">= 0"):
        T.harmonic_mean([1.0, -0.1])


def test_answer_accuracy_case_and_punctuation_insensitive():
    assert T.answer_accuracy(["It is PARIS.", "London"], ["paris", "Berlin"]) == 0.5
    assert T.answer_accuracy(["Parisian food"], ["Paris"]) == 0.0  # whole words only
    assert T.answer_accuracy(['He wrote "The Silent Harbor".'], ["the silent harbor"]) == 1.0
    with pytest.raises(ConfigError, match="facts"):
        T.answer_accuracy(["a"], [])


def test_fluency_repeated_ngrams():
    # 9 words -> 7 trigrams, 3 distinct: 1 - 3/7
    assert T.repeated_ngram_rate("a b c a b c a b c") == pytest.approx(4 / 7)
    assert T.repeated_ngram_rate("the capital of France is Paris") == 0.0
    assert T.repeated_ngram_rate("too short") == 0.0
    assert T.is_degenerate("a b c a b c a b c")
    assert T.is_degenerate("  ...  ")
    assert not T.is_degenerate("The capital of France is Paris.")


def test_min_k_and_min_k_plus_plus_hand_cases():
    lp = [-0.1, -5.0, -0.2, -3.0, -1.0]
    assert T.min_k_score(lp, 0.4) == pytest.approx(-4.0)  # lowest 2 of 5
    assert T.min_k_score(lp, 0.1) == pytest.approx(-5.0)  # at least one token
    assert T.min_k_score(lp, 1.0) == pytest.approx(sum(lp) / 5)
    stats = T.TokenStats(
        logprob=torch.tensor([-1.0, -2.0, -0.5]),
        mu=torch.tensor([-1.5, -1.0, -1.0]),
        sigma=torch.tensor([0.5, 1.0, 0.25]),
    )  # z = 1, -1, 2
    assert T.min_k_plus_plus_score(stats, 0.4) == pytest.approx(-1.0)
    assert T.min_k_plus_plus_score(stats, 1.0) == pytest.approx(2 / 3)
    with pytest.raises(ConfigError, match="distribution=True"):
        T.min_k_plus_plus_score(T.TokenStats(torch.tensor([-1.0])))
    with pytest.raises(ConfigError, match="k must"):
        T.min_k_score(lp, 0.0)


def test_vocab_moments_hand_case():
    logp = torch.log(torch.tensor([[0.75, 0.25], [0.5, 0.5]], dtype=torch.float64))
    mu, sigma = T.vocab_logprob_moments(logp)
    assert mu[0] == pytest.approx(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert sigma[0] == pytest.approx(math.sqrt(0.75 * 0.25) * math.log(3))
    assert mu[1] == pytest.approx(math.log(0.5))
    assert sigma[1] == pytest.approx(0.0, abs=1e-7)


def test_loss_zlib_auc_and_privleak():
    assert T.loss_score([-1.0, -3.0]) == -2.0
    assert T.zlib_score([-2.0], "aaaa") == pytest.approx(-2.0 / len(zlib.compress(b"aaaa")))
    # pairs: 3>0, 3>2, 2>0, 2=2 (half), 1>0, 1<2 -> 4.5 / 6
    assert T.mia_auc([3, 2, 1], [0, 2]) == pytest.approx(0.75)
    assert T.mia_auc([1, 1], [1]) == 0.5
    assert T.priv_leak(0.8, 0.5) == pytest.approx(60.0)
    assert T.priv_leak(0.4, 0.5) == pytest.approx(-20.0)
    with pytest.raises(ConfigError):
        T.mia_auc([], [1.0])


# ------------------------------------------------------------------------------------------------
# model-based helpers on tiny_llama


@pytest.fixture(scope="module")
def tiny():
    pytest.importorskip("transformers")
    from obliviate.models.lm import tiny_llama

    torch.set_num_threads(1)
    return tiny_llama(seed=0)


QS = ["Where was Ada born?", "What is 2 + 2?", "Who wrote it?"]
ANS = ["Ada was born in Ulm.", "Four.", "Somebody with a rather long name wrote it."]


def test_answer_logprobs_match_manual_and_ignore_padding(tiny):
    from obliviate.models.lm import format_question

    model, tok = tiny.model, tiny.tokenizer
    before = [p.detach().clone() for p in model.parameters()]
    batched = T.answer_logprobs(model, tok, QS, ANS, batch_size=3)
    single = T.answer_logprobs(model, tok, QS, ANS, batch_size=1)
    for q, a, lb, ls in zip(QS, ANS, batched, single, strict=True):
        assert lb.shape == (len(a.encode()),)  # byte tokenizer: one token per byte
        torch.testing.assert_close(lb, ls, atol=1e-5, rtol=0)
        p_ids = tok(format_question(tok, q))["input_ids"]
        ids = torch.tensor([p_ids + list(a.encode())])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0].float(), -1)
        manual = torch.stack([logp[len(p_ids) + j - 1, b] for j, b in enumerate(a.encode())])
        torch.testing.assert_close(lb, manual, atol=1e-5, rtol=0)
    for p, b in zip(model.parameters(), before, strict=True):
        assert torch.equal(p, b)


def test_token_stats_distribution_matches_full_softmax(tiny):
    model, tok = tiny.model, tiny.tokenizer
    (st,) = T.token_stats(model, tok, [""], ["hello"], distribution=True)
    ids = torch.tensor([tok("hello")["input_ids"]])  # <s> h e l l o
    assert st.logprob.shape == (5,)
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0, :-1].double(), -1)
    mu = (logp.exp() * logp).sum(-1)
    sd = ((logp.exp() * (logp - mu[:, None]) ** 2).sum(-1)).sqrt()
    torch.testing.assert_close(st.mu.double(), mu, atol=1e-5, rtol=0)
    torch.testing.assert_close(st.sigma.double(), sd, atol=1e-5, rtol=0)
    with pytest.raises(ConfigError, match="empty"):
        T.token_stats(model, tok, ["q"], [""])


def test_greedy_generation_is_deterministic_and_batch_invariant(tiny):
    model, tok = tiny.model, tiny.tokenizer
    a = T.answer_questions(model, tok, QS, max_new_tokens=6, batch_size=3)
    b = T.answer_questions(model, tok, QS, max_new_tokens=6, batch_size=1)
    assert a == b
    assert tok.padding_side == "right"  # restored
    with pytest.raises(ConfigError, match="max_new_tokens"):
        T.greedy_generate(model, tok, ["x"], max_new_tokens=0)


def test_mia_scores_and_verbatim_memorisation_shapes(tiny):
    model, tok = tiny.model, tiny.tokenizer
    scores = T.mia_scores(model, tok, ["", ""], ["some text here", "other text"])
    assert set(scores) == {"loss", "zlib", "min_k", "min_k_pp"}
    assert all(len(v) == 2 and all(math.isfinite(x) for x in v) for v in scores.values())
    vm = T.verbatim_memorisation(model, tok, ["one two three four five six", "abc def"])
    assert len(vm) == 2 and all(0.0 <= v <= 1.0 for v in vm)
    with pytest.raises(ConfigError, match="fewer than 2 tokens"):
        T.verbatim_memorisation(model, tok, ["a"])


def test_training_on_an_answer_raises_its_probability_and_membership():
    """Sanity of directions: a few steps on one QA pair make its answer likelier, and its
    membership scores rise against an untouched pair."""
    pytest.importorskip("transformers")
    from obliviate.models.lm import format_question, tiny_llama

    lm = tiny_llama(seed=1)
    model, tok = lm.model, lm.tokenizer
    q, a = QS[0], ANS[0]
    p0 = T.answer_probability(T.answer_logprobs(model, tok, [q], [a])[0])
    p_ids = tok(format_question(tok, q))["input_ids"]
    ids = torch.tensor([p_ids + list(a.encode())])
    labels = ids.clone()
    labels[0, : len(p_ids)] = -100  # loss on answer tokens only
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(60):
        opt.zero_grad()
        model(input_ids=ids, labels=labels).loss.backward()
        opt.step()
    model.eval()
    p1 = T.answer_probability(T.answer_logprobs(model, tok, [q], [a])[0])
    assert p1 > p0 + 0.2
    prompts = [format_question(tok, q), format_question(tok, QS[1])]
    s = T.mia_scores(model, tok, prompts, [a, ANS[1]])
    assert s["loss"][0] > s["loss"][1] and s["min_k"][0] > s["min_k"][1]
    gen = T.answer_questions(model, tok, [q], max_new_tokens=len(a.encode()))[0]
    assert T.rouge_l(gen, a) > 0.5
