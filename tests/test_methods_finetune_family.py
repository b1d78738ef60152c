"""Method-specific checks of the fine-tuning family beyond the conformance suite.

Tiny random models and random tensors: these test the logic (masks, layer selection, dampening
rule, relabelling, schedules), not the quality of unlearning.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from obliviate.errors import ConfigError, RequestError
from obliviate.models import create_model
from obliviate.unlearn import TensorSet, UnlearnTask, create_unlearner
from obliviate.unlearn.methods.cf_k import last_k_layers
from obliviate.unlearn.methods.eu_k import reinit_module
from obliviate.unlearn.methods.l1_sparse import l1_weight
from obliviate.unlearn.methods.random_label import random_wrong_labels
from obliviate.unlearn.methods.salun import saliency_mask
from obliviate.unlearn.methods.scrub import distill_kl
from obliviate.unlearn.methods.ssd import dampen

NUM_CLASSES = 4


def _task(seed: int = 0, n_forget: int = 40, n_retain: int = 160) -> UnlearnTask:
    g = torch.Generator().manual_seed(123)
    n = n_forget + n_retain
    x = torch.rand(n, 1, 8, 8, generator=g)
    y = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    y[:n_forget] = 0
    ids = torch.arange(n)
    f = TensorSet(x[:n_forget], y[:n_forget], ids[:n_forget])
    r = TensorSet(x[n_forget:], y[n_forget:], ids[n_forget:])
    return UnlearnTask(forget=f, _retain=r, num_classes=NUM_CLASSES, seed=seed)


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return create_model("small_cnn", num_classes=NUM_CLASSES, image_size=(8, 8))


def _bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 16),
        nn.BatchNorm1d(16),
        nn.ReLU(),
        nn.Linear(16, NUM_CLASSES),
    )


def _state(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


# ------------------------------------------------------------------------------ random labels


def test_random_wrong_labels_never_true_and_cover_the_others():
    y = torch.arange(5).repeat(400)
    g = torch.Generator().manual_seed(0)
    r = random_wrong_labels(y, 5, g)
    assert not torch.any(r == y)
    for c in range(5):
        assert set(r[y == c].tolist()) == set(range(5)) - {c}
    again = random_wrong_labels(y, 5, torch.Generator().manual_seed(0))
    assert torch.equal(r, again)


# ------------------------------------------------------------------------------------- SalUn


@pytest.mark.parametrize("fraction", [0.1, 0.5])
def test_salun_mask_has_the_configured_sparsity(fraction):
    model, t = _cnn(), _task()
    masks = saliency_mask(model, t.forget.x, t.forget.y, fraction, batch_size=16)
    n = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    assert kept == round(fraction * n)
    # the kept entries are the largest |grad|: every kept |g| >= every dropped |g|
    model.zero_grad()
    nn.functional.cross_entropy(model(t.forget.x), t.forget.y).backward()
    g = torch.cat([p.grad.abs().flatten() for p in model.parameters()])
    m = torch.cat([masks[k].flatten() for k, _ in model.named_parameters()])
    assert g[m].min() >= g[~m].max() * (1 - 1e-5)


def test_salun_leaves_masked_out_weights_unchanged():
    model, t = _cnn(), _task()
    masks = saliency_mask(model, t.forget.x, t.forget.y, 0.3, batch_size=16)
    res = create_unlearner("salun", mask_fraction=0.3, epochs=2, batch_size=16).unlearn(model, t)
    before, after = dict(model.named_parameters()), dict(res.model.named_parameters())
    moved = 0
    for name, m in masks.items():
        assert torch.equal(after[name][~m], before[name][~m]), name
        moved += int((after[name][m] != before[name][m]).sum())
    assert moved > 0
    assert res.stats["mask_fraction"] == pytest.approx(0.3, abs=1e-5)
    # no gradient hooks are left on the returned model
    assert all(not p._backward_hooks for p in res.model.parameters())


# ---------------------------------------------------------------------------------------- SSD


def test_ssd_dampen_rule_is_exact():
    lin = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [-4.0, 5.0, -6.0]]))
    f_ref = {"weight": torch.tensor([[1.0, 1.0, 0.0], [2.0, 1.0, 1.0]])}
    f_forget = {"weight": torch.tensor([[10.0, 50.0, 0.0], [30.0, 10.0, 100.0]])}
    changed = dampen(lin, f_ref, f_forget, alpha=10.0, lam=1.0)
    # selected: F_f > 10*F_D -> (0,1): 50 > 10, (1,0): 30 > 20, (1,2): 100 > 10
    expected = torch.tensor([[1.0, 2.0 * 1 / 50, 3.0], [-4.0 * 2 / 30, 5.0, -6.0 * 1 / 100]])
    assert changed == 3
    assert torch.allclose(lin.weight, expected)
    # unselected entries are bit-for-bit unchanged (F_f == alpha*F_D is not selected)
    assert lin.weight[0, 0] == 1.0 and lin.weight[0, 2] == 3.0 and lin.weight[1, 1] == 5.0


def test_ssd_only_shrinks_and_reports_what_it_changed():
    model, t = _cnn(), _task()
    res = create_unlearner("ssd", alpha=1.0).unlearn(model, t)
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    after = torch.cat([p.detach().flatten() for p in res.model.parameters()])
    diff = after != before
    assert int(diff.sum()) == res.stats["dampened"] > 0
    assert torch.all(after[diff].abs() < before[diff].abs())
    assert torch.all(torch.sign(after[diff]) * torch.sign(before[diff]) >= 0)
    assert t.reads["retain"] > 0


# ---------------------------------------------------------------------------------- EU-k / CF-k


def test_last_k_layers_counts_weight_layers_and_brings_norms_along():
    net = _bn_net()
    names = lambda k: [n for n, _ in last_k_layers(net, k)]  # noqa: E731
    assert names(1) == ["7"]
    assert names(2) == ["4", "5", "7"]
    assert names(3) == ["0", "1", "4", "5", "7"]
    with pytest.warns(UserWarning, match="exceeds"):
        assert names(9) == names(3)
    assert [n for n, _ in last_k_layers(_cnn(), 2)] == ["fc.0", "head"]


def test_eu_k_reinitialises_exactly_the_last_k_layers():
    model, t = _cnn(), _task(seed=7)
    res = create_unlearner("eu_k", k=2, epochs=0).unlearn(model, t)
    expected = copy.deepcopy(model)
    torch.manual_seed(7)
    for _, m in last_k_layers(expected, 2):
        reinit_module(m)
    got, want, orig = res.model.state_dict(), expected.state_dict(), model.state_dict()
    for k in got:
        assert torch.equal(got[k], want[k]), k
        if k.startswith(("fc.0", "head")):
            assert not torch.equal(got[k], orig[k]), k
        else:
            assert torch.equal(got[k], orig[k]), k
    assert res.stats["layers"] == ["fc.0", "head"]


@pytest.mark.parametrize("name", ["cf_k", "eu_k"])
def test_frozen_part_is_unchanged_including_batchnorm_statistics(name):
    model, t = _bn_net(), _task()
    before = _state(model)
    res = create_unlearner(name, k=1, epochs=2, batch_size=32).unlearn(model, t)
    after = res.model.state_dict()
    for k in before:
        if k.startswith("7."):
            assert not torch.equal(after[k], before[k]), k
        else:
            assert torch.equal(after[k], before[k]), k
    assert all(p.requires_grad for p in res.model.parameters())


# ------------------------------------------------------------------------- l1-sparse, NGD, SCRUB


def test_l1_weight_decays_linearly_to_zero():
    assert [l1_weight(1.0, e, 4, 0) for e in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert [l1_weight(1.0, e, 4, 2) for e in range(4)] == [1.0, 0.5, 0.0, 0.0]
    assert l1_weight(1.0, 0, 2, 2) == 0.0


def test_noisy_gd_without_noise_is_finetune():
    model = _cnn()
    kw = {"epochs": 1, "lr": 0.05, "batch_size": 32}
    a = create_unlearner("noisy_gd", sigma=0.0, **kw).unlearn(model, _task()).model
    b = create_unlearner("finetune", **kw).unlearn(model, _task()).model
    c = create_unlearner("noisy_gd", sigma=1e-3, **kw).unlearn(model, _task()).model
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_scrub_kl_and_step_counts():
    s, t = torch.randn(6, 5), torch.randn(6, 5)
    T = 4.0
    p_t, p_s = torch.softmax(t / T, 1), torch.softmax(s / T, 1)
    manual = (p_t * (p_t.log() - p_s.log())).sum(1).mean() * T * T
    assert torch.allclose(distill_kl(s, t, T), manual, atol=1e-6)
    res = create_unlearner(
        "scrub", epochs=3, msteps=2, batch_size=32, forget_batch_size=16
    ).unlearn(_cnn(), _task())
    assert res.stats["max_steps_taken"] == 2 * 3  # 2 epochs x ceil(40/16)
    assert res.stats["min_steps_taken"] == 3 * 5  # 3 epochs x ceil(160/32)


def test_scrub_step_cap_keeps_the_balance_of_max_and_min_steps():
    """max_steps cuts max- and min-steps in proportion: 40 forget images in batches of 4 give
    10 max-steps per pass against 5 min-steps, so a cap of 12 allows 8 + 4 (a cap on the sum
    alone gave 10 + 2: the max-pass that opens the epoch took nearly all of it)."""
    from obliviate.unlearn.methods.scrub import ScrubConfig, scrub_budgets

    kw = dict(epochs=1, msteps=1, batch_size=32, forget_batch_size=4)
    assert scrub_budgets(ScrubConfig(**kw), 40, 160) == {"max": 10, "min": 5}
    assert scrub_budgets(ScrubConfig(**kw, max_steps=12), 40, 160) == {"max": 8, "min": 4}
    assert scrub_budgets(ScrubConfig(**kw, max_steps=1), 40, 160) == {"max": 1, "min": 0}
    assert scrub_budgets(ScrubConfig(**kw, max_steps=99), 40, 160) == {"max": 10, "min": 5}
    assert scrub_budgets(ScrubConfig(**{**kw, "msteps": 0}, max_steps=3), 40, 160) == {
        "max": 0, "min": 3,
    }  # fmt: skip
    res = create_unlearner("scrub", **kw, max_steps=12).unlearn(_cnn(), _task())
    assert (res.stats["max_steps_taken"], res.stats["min_steps_taken"]) == (8, 4)


def test_stop_at_val_acc_uses_the_input_models_class_weighted_val_accuracy():
    """Gold-free matched forgetting: the threshold is the input model's accuracy on validation
    images of the request's classes, weighted by the request's class mix (here 3:1)."""
    from obliviate.inference import batched_logits

    g = torch.Generator().manual_seed(7)
    base = _task()
    fy = base.forget.y.clone()
    fy[30:] = 1  # request: 30 images of class 0, 10 of class 1
    forget = TensorSet(base.forget.x, fy, base.forget.ids)
    vx = torch.rand(60, 1, 8, 8, generator=g)
    vy = torch.arange(60) % NUM_CLASSES
    val = TensorSet(vx, vy, torch.arange(1000, 1060))
    task = UnlearnTask(forget=forget, _retain=base.retain, val=val, num_classes=NUM_CLASSES)
    model = _cnn()
    hit = batched_logits(model, vx).argmax(1) == vy
    want = 100.0 * (0.75 * float(hit[vy == 0].double().mean()) + 0.25 * float(
        hit[vy == 1].double().mean()
    ))  # fmt: skip
    res = create_unlearner("grad_ascent", stop_at_val_acc=True, lr=0.05, max_steps=30).unlearn(
        model, task
    )
    assert res.stats["stop_threshold"] == pytest.approx(want)
    if res.stats["stopped_early"]:
        assert res.stats["forget_acc_at_stop"] <= want
    else:
        assert res.stats["steps"] == 30 and res.stats["forget_acc_at_stop"] > want
    with pytest.raises(RequestError, match="needs validation data"):
        create_unlearner("grad_ascent", stop_at_val_acc=True).unlearn(model, base)
    no_class_1 = TensorSet(vx[vy != 1], vy[vy != 1], val.ids[vy != 1])
    bad = UnlearnTask(forget=forget, _retain=base.retain, val=no_class_1, num_classes=NUM_CLASSES)
    with pytest.raises(RequestError, match=r"classes \[1\]"):
        create_unlearner("grad_ascent", stop_at_val_acc=True).unlearn(model, bad)
    with pytest.raises(ConfigError, match="not both"):
        create_unlearner("grad_ascent", stop_at_val_acc=True, stop_forget_acc=5.0)
