"""Language models under the unlearner contract: text tasks on ``tiny_llama`` (tofu_synth).

Every method tagged ``supports_text`` passes :func:`obliviate.testing.check_unlearner` on the
default text case (tiny_llama fine-tuned on three tofu_synth people, forgetting one): input model
untouched, deterministic, forget answer-token loss rises, bad tasks refused. A method that cannot
take a text task (or, for ``text_only`` methods, an image task) fails with a ConfigError naming
the method and the model kind. The losses are checked against independent computations
(Hugging Face's own causal-LM loss; NPO's and SimNPO's closed forms at hand-picked points).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from obliviate.data.tofu_synth import tofu_synth
from obliviate.errors import ConfigError, RequestError
from obliviate.models.lm import tiny_llama
from obliviate.testing import CHECK_NAMES, check_unlearner, default_case, default_text_case
from obliviate.unlearn import (
    UNLEARNERS,
    TensorSet,
    create_unlearner,
    list_unlearners,
    make_text_task,
    task_loss,
    text_loss,
)
from obliviate.unlearn.methods.idk import REFUSALS
from obliviate.unlearn.methods.neggrad_plus import NegGradPlus
from obliviate.unlearn.text_task import IGNORE, sequence_nll

pytest.importorskip("transformers")

TEXT_METHODS = list_unlearners("text")
#: Small, fast settings on the tiny case (the defaults target real models); >= 2 steps each so
#: the stopping-rule check can stop after 2.
FAST: dict[str, dict] = {
    "grad_ascent": dict(lr=1e-3, optimizer="adam", batch_size=8),
    "neggrad_plus": dict(lr=1e-3, optimizer="adam", batch_size=8, alpha=0.5, epochs=1),
    "finetune": dict(lr=3e-3, optimizer="adam", batch_size=8, epochs=1),
    "npo": dict(lr=1e-3, batch_size=8, epochs=1),
    "simnpo": dict(lr=1e-3, batch_size=8, epochs=1),
    "idk": dict(lr=1e-3, batch_size=8, epochs=1),
}


@pytest.fixture(scope="module")
def case():
    return default_text_case()


def test_the_text_methods_are_the_expected_ones():
    assert set(TEXT_METHODS) == set(FAST)
    assert {"npo", "simnpo", "idk"} <= set(TEXT_METHODS) - set(list_unlearners("image"))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", TEXT_METHODS)
def test_conformance_on_tiny_llama(name, case):
    ran = check_unlearner(
        name, config=FAST[name], task=case.task, model=case.model, loss_fn=text_loss
    )
    assert ran == list(CHECK_NAMES)


@pytest.mark.parametrize("name", TEXT_METHODS)
def test_forget_loss_rises_and_input_untouched(name, case):
    before = {k: v.clone() for k, v in case.model.state_dict().items()}
    res = create_unlearner(name, **FAST[name]).unlearn(case.model, case.task)
    assert text_loss(res.model, case.task.forget) > text_loss(case.model, case.task.forget)
    assert all(torch.equal(before[k], v) for k, v in case.model.state_dict().items())
    again = create_unlearner(name, **FAST[name]).unlearn(case.model, case.task)
    a, b = res.model.state_dict(), again.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_non_text_methods_refuse_a_text_task(case):
    others = sorted(set(list_unlearners()) - set(TEXT_METHODS))
    assert {"fisher", "ssd", "salun", "random_label", "scrub", "retrain", "roka"} <= set(others)
    for name in others:
        with pytest.raises(ConfigError, match=rf"{name}.*text tasks \(causal language models\)"):
            create_unlearner(name).unlearn(case.model, case.task)


def test_text_only_methods_refuse_an_image_task():
    img = default_case()
    for name in ("npo", "simnpo", "idk"):
        with pytest.raises(ConfigError, match=rf"{name}.*only text tasks.*not an image"):
            create_unlearner(name).unlearn(img.model, img.task)


def test_grad_diff_is_neggrad_plus():
    assert UNLEARNERS.get("grad_diff") is NegGradPlus
    assert "grad_diff" in UNLEARNERS and "grad_diff" not in list_unlearners()
    u = create_unlearner("grad_diff", alpha=0.5)
    assert type(u) is NegGradPlus and u.name == "neggrad_plus" and u.config.alpha == 0.5


# ------------------------------------------------------------------------------ the text task


def test_text_task_labels_cover_answer_tokens_only(case):
    task, tok = case.task, case.task.tokenizer
    f = task.forget
    assert f.is_text and task.is_text and f.x.dtype == torch.long
    assert bool(((f.y == IGNORE) | (f.y == f.x)).all())  # labels are the inputs or ignored
    assert bool((f.y[f.mask == 0] == IGNORE).all())  # padding is never a label
    answer = tok.decode(f.y[0][f.y[0] != IGNORE])
    assert answer.endswith(tok.eos_token) and "\nA:" not in answer
    assert tok.decode(f.x[0][f.mask[0].bool()]).endswith(answer)


@torch.no_grad()
def test_task_loss_matches_hugging_face_causal_lm_loss(case):
    f = case.task.forget
    batch = f.batch(torch.arange(4))
    ours = float(task_loss(case.model, batch))
    hf = float(case.model(input_ids=batch[0], attention_mask=batch[2], labels=batch[1]).loss)
    assert ours == pytest.approx(hf, rel=1e-5)
    assert text_loss(case.model, f) == pytest.approx(
        float(task_loss(case.model, f.batch(torch.arange(len(f))))), rel=1e-5
    )


def test_make_text_task_refuses_bad_requests():
    lm = tiny_llama()
    ds = tofu_synth(n_trained=2, n_holdout=1, n_reserve=1)
    first = [p.id for p in ds.pairs_of("trained")][:3]
    with pytest.raises(RequestError, match="empty"):
        make_text_task(lm, ds, [])
    with pytest.raises(RequestError, match="duplicate"):
        make_text_task(lm, ds, [first[0], first[0]], max_length=128)
    with pytest.raises(RequestError, match="overlap"):
        make_text_task(lm, ds, first, retain_ids=first[1:], max_length=128)
    holdout = ds.pairs_of("holdout")[0].id
    with pytest.raises(RequestError, match="holdout"):
        make_text_task(lm, ds, [holdout], max_length=128)
    with pytest.raises(ConfigError, match="max_length=8"):
        make_text_task(lm, ds, first, max_length=8)
    task = make_text_task(lm, ds, first, max_length=128)
    assert task.forget.ids.tolist() == ds.index_of(first)
    assert len(task.retain) == len(ds.pairs_of("trained")) - 3


def test_image_tensor_sets_are_unchanged():
    s = TensorSet(torch.zeros(3, 2), torch.tensor([0, 1, 0]), torch.arange(3))
    assert s.mask is None and not s.is_text and len(TensorSet.empty_like(s)) == 0
    assert len(s.batch(torch.tensor([0, 2]))) == 2
    with pytest.raises(ValueError, match="one shape"):
        TensorSet(torch.zeros(3, 4), torch.zeros(3, 4), torch.arange(3), torch.zeros(3, 5))


# ---------------------------------------------------------------------- closed forms of losses


@torch.no_grad()
def test_npo_loss_closed_form(case):
    """At the reference (θ = ref) the forget term is (2/β) log 2; the retain term adds λ · NLL."""
    u = create_unlearner("npo", beta=0.1, retain_weight=0.0)
    u.setup(case.model, case.task)
    fb = case.task.forget.batch(torch.arange(3))
    assert float(u.compute_loss(case.model, fb, None)) == pytest.approx(20 * math.log(2), rel=1e-5)
    u2 = create_unlearner("npo", beta=0.5, retain_weight=2.0)
    u2.setup(case.model, case.task)
    rb = case.task.retain.batch(torch.arange(2))
    want = 4 * math.log(2) + 2.0 * float(task_loss(case.model, rb))
    assert float(u2.compute_loss(case.model, fb, rb)) == pytest.approx(want, rel=1e-5)


@torch.no_grad()
def test_simnpo_loss_closed_form(case):
    fb = case.task.forget.batch(torch.arange(3))
    nll, n = sequence_nll(case.model, fb)
    beta, gamma = 2.5, 0.3
    want = float(-(2 / beta) * F.logsigmoid(beta * nll / n - gamma).mean())
    u = create_unlearner("simnpo", beta=beta, gamma=gamma, retain_weight=0.0)
    assert float(u.compute_loss(case.model, fb, None)) == pytest.approx(want, rel=1e-5)
    per_row = [
        -math.log(1 / (1 + math.exp(-(beta * float(a / b) - gamma))))
        for a, b in zip(nll, n, strict=True)
    ]
    assert want == pytest.approx((2 / beta) * sum(per_row) / 3, rel=1e-5)


def test_idk_replaces_answers_with_refusals(case):
    u = create_unlearner("idk")
    u.setup(case.model, case.task)
    tok = case.task.tokenizer
    fb = case.task.forget.batch(torch.arange(4))
    x, y, mask = u.refusal_batch(fb)
    for i in range(4):
        ans = tok.decode(y[i][y[i] != IGNORE], skip_special_tokens=True)
        assert ans in REFUSALS
        start = int((fb[1][i] != IGNORE).nonzero()[0])
        assert torch.equal(x[i, :start], fb[0][i, :start])  # the same prompt
