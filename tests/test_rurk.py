"""RURK (Hsu et al., NeurIPS 2025): loss components, perturbation variants, and residual knowledge
on a tiny real case (sklearn digits, small_cnn)."""

from __future__ import annotations

import pytest
import torch

from obliviate.data import ForgetRequest, load_dataset, make_split
from obliviate.errors import ConfigError
from obliviate.metrics import residual_knowledge
from obliviate.models import create_model
from obliviate.perturb import gaussian
from obliviate.train import TrainConfig, train_model
from obliviate.unlearn import TensorSet, UnlearnTask, ce, create_unlearner, make_task
from obliviate.unlearn.methods.rurk import RURKConfig, rurk_perturbed_forget

NC = 4


def _task(seed: int = 0) -> UnlearnTask:
    g = torch.Generator().manual_seed(7)
    x = torch.rand(120, 1, 8, 8, generator=g)
    y = torch.randint(0, NC, (120,), generator=g)
    ids = torch.arange(120)
    return UnlearnTask(
        forget=TensorSet(x[:30], y[:30], ids[:30]),
        _retain=TensorSet(x[30:], y[30:], ids[30:]),
        num_classes=NC,
        seed=seed,
    )


def _cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("small_cnn", num_classes=NC, image_size=(8, 8))


def _batches(task: UnlearnTask):
    f, r = task.forget, task._retain
    assert r is not None
    return (f.x[:16], f.y[:16]), (r.x[:32], r.y[:32])


def test_without_perturbed_term_it_is_the_neggrad_style_two_term_loss():
    task, model = _task(), _cnn()
    fb, rb = _batches(task)
    u = create_unlearner("rurk", lambda_a=0.0, lambda_f=0.2)
    u.setup(model, task)
    got = u.compute_loss(model, fb, rb)
    assert torch.allclose(got, ce(model, rb) - 0.2 * ce(model, fb))


def test_gaussian_term_is_minus_lambda_a_ce_on_the_same_noise():
    task, model = _task(), _cnn()
    fb, rb = _batches(task)
    u = create_unlearner("rurk", lambda_f=0.1, lambda_a=0.5, tau=0.2, v=2)
    u.setup(model, task)
    state = u._pgen.get_state()
    got = u.compute_loss(model, fb, rb)
    g = torch.Generator()
    g.set_state(state)
    xp = gaussian(fb[0].repeat(2, 1, 1, 1), 0.2, g)
    want = ce(model, rb) - 0.1 * ce(model, fb) - 0.5 * ce(model, (xp, fb[1].repeat(2)))
    assert torch.allclose(got, want)
    # τ = 0: the perturbed copies are the forget batch itself
    u0 = create_unlearner("rurk", lambda_f=0.0, lambda_a=0.5, tau=0.0)
    u0.setup(model, task)
    assert torch.allclose(u0.compute_loss(model, fb, rb), ce(model, rb) - 0.5 * ce(model, fb))


@pytest.mark.parametrize("kind", ["fgsm", "pgd"])
def test_targeted_attack_variant_flips_sign_and_uses_wrong_labels(kind):
    model = _cnn()
    task = _task()
    x, y = task.forget.x, task.forget.y
    cfg = RURKConfig(perturbation=kind, tau=0.05, v=3, pgd_steps=3)
    g = torch.Generator().manual_seed(0)
    xp, yp, sign = rurk_perturbed_forget(model, x, y, cfg, NC, g)
    assert sign == 1.0 and xp.shape == (90, 1, 8, 8)
    assert not torch.any(yp == y.repeat(3)), "targeted labels must be wrong labels y' != y"
    assert float((xp - x.repeat(3, 1, 1, 1)).abs().max()) <= 0.05 + 1e-6
    assert float(xp.min()) >= 0 and float(xp.max()) <= 1
    # the attack raised CE towards y' (it is the worst point of the ball for y')
    f = torch.nn.functional.cross_entropy
    with torch.no_grad():
        assert f(model(xp), yp) > f(model(x.repeat(3, 1, 1, 1)), yp)
    # untargeted reading: labels are y, sign −1, and the loss on y went down
    cfg_u = RURKConfig(perturbation=kind, tau=0.05, targeted=False, pgd_steps=3)
    xu, yu, su = rurk_perturbed_forget(model, x, y, cfg_u, NC, g)
    assert su == -1.0 and torch.equal(yu, y)
    with torch.no_grad():
        assert f(model(xu), y) < f(model(x), y)


def test_uniform_tau_sampling_spreads_noise_levels_over_zero_to_tau():
    x = torch.full((400, 1, 8, 8), 0.5)
    y = torch.zeros(400, dtype=torch.int64)
    cfg = RURKConfig(tau=0.2, tau_sampling="uniform", v=2)
    xp, yp, sign = rurk_perturbed_forget(None, x, y, cfg, NC, torch.Generator().manual_seed(0))
    assert sign == -1.0 and xp.shape == (800, 1, 8, 8) and torch.equal(yp, y.repeat(2))
    std = (xp - 0.5).flatten(1).std(dim=1)  # per-copy noise level (no clamping at 0.5 ± 0.2·3)
    assert float(std.max()) < 0.2 * 1.2  # never above τ
    assert float(std.min()) < 0.02  # some copies are nearly clean
    # U(0, τ): the mean std is ≈ τ/2, quartiles ≈ τ/4 and 3τ/4
    assert abs(float(std.mean()) - 0.1) < 0.01
    q = torch.quantile(std, torch.tensor([0.25, 0.75]))
    assert abs(float(q[0]) - 0.05) < 0.015 and abs(float(q[1]) - 0.15) < 0.015
    # fixed sampling keeps every copy at std τ
    xf, _, _ = rurk_perturbed_forget(
        None, x, y, RURKConfig(tau=0.2), NC, torch.Generator().manual_seed(0)
    )
    sf = (xf - 0.5).flatten(1).std(dim=1)
    assert float(sf.min()) > 0.12 and abs(float(sf.mean()) - 0.2) < 0.01


def test_bad_options_are_refused():
    bads = (
        {"tau": 1.5},
        {"v": 0},
        {"lambda_a": -1.0},
        {"perturbation": "nope"},
        {"tau_sampling": "loguniform"},
        {"tau_sampling": "uniform", "perturbation": "fgsm"},
    )
    for bad in bads:
        with pytest.raises(ConfigError):
            create_unlearner("rurk", **bad)


@pytest.fixture(scope="module")
def digits_case():
    """Few training images per class and a random forget set: the original memorises the forget
    samples, the gold model does not, so the original's r_τ > 1 under Gaussian noise."""
    ds = load_dataset("digits")
    split = make_split(ds, seed=0, test=0.25, train_per_class=30)
    cfg = TrainConfig(epochs=30, lr=0.05, batch_size=32, seed=0)
    tm = train_model(ds, split, "small_cnn", cfg, show_progress=False, evaluate_parts=())
    g = torch.Generator().manual_seed(1)
    req = ForgetRequest(
        torch.sort(split.train[torch.randperm(len(split.train), generator=g)[:90]]).values
    )
    gold = train_model(
        ds, split, "small_cnn", cfg, exclude=req, show_progress=False, evaluate_parts=()
    ).model
    return tm.model, gold, make_task(ds, split, req, seed=0)


@pytest.mark.timeout(120)
def test_rurk_lowers_residual_knowledge_where_the_original_has_it(digits_case):
    original, gold, task = digits_case
    f = task.forget
    taus = (0.1, 0.2)
    orig = [residual_knowledge(original, gold, f.x, f.y, t, c=40, seed=0) for t in taus]
    assert all(r.mean > 1.2 for r in orig), [r.mean for r in orig]
    u = create_unlearner("rurk", epochs=30, batch_size=32, tau=0.1, lambda_a=0.3)
    res = u.unlearn(original, task)
    assert res.stats["steps"] == 200  # 7 steps per epoch, capped at RURK's 200 iterations
    after = [residual_knowledge(res.model, gold, f.x, f.y, t, c=40, seed=0) for t in taus]
    for r0, r1 in zip(orig, after, strict=True):
        assert r1.mean < r0.mean - 0.2, (r0.tau, r0.mean, r1.mean)


def test_attack_options_run_and_differ_from_gaussian(digits_case):
    original, _, task = digits_case
    states = {}
    for kind in ("gaussian", "fgsm", "pgd"):
        u = create_unlearner("rurk", perturbation=kind, max_steps=3, batch_size=32, pgd_steps=2)
        a = u.unlearn(original, task).model.state_dict()
        b = u.unlearn(original, task).model.state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), f"{kind} is not deterministic"
        states[kind] = a
    for kind in ("fgsm", "pgd"):
        assert any(not torch.equal(states[kind][k], states["gaussian"][k]) for k in states[kind])
