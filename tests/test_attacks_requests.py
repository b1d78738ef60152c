"""Adversarial deletion requests: budgets, constraints, training-split-only ids, determinism,
scores checked against independent references, and the ``obliviate attack requests`` CLI.

Tiny real case: scikit-learn digits (8×8) with small_cnn, a few seconds.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
import typer
from typer.testing import CliRunner

from obliviate.attacks import REQUEST_STRATEGIES, select_request
from obliviate.attacks.requests import influence_scores, resolve_budget, sample_scores
from obliviate.data import ForgetRequest, load_dataset, make_split
from obliviate.errors import ConfigError, RequestError, UnknownNameError
from obliviate.train import TrainConfig, train_model

STRATEGIES = REQUEST_STRATEGIES.names()
CHEAP_ADAPTIVE = {"method": "grad_ascent", "proxy_steps": 3, "proxy_retain": 300, "rounds": 2}


def _opts(strategy: str) -> dict:
    return dict(CHEAP_ADAPTIVE) if strategy == "adaptive" else {}


@pytest.fixture(scope="module")
def case():
    torch.set_num_threads(1)
    ds = load_dataset("digits")
    split = make_split(ds, seed=0, test=0.25, reserve=60, val=100)
    cfg = TrainConfig(epochs=4, lr=0.05, batch_size=64, seed=0)
    tm = train_model(ds, split, "small_cnn", cfg, show_progress=False, evaluate_parts=("test",))
    return ds, split, tm.model, tm


def test_registry_has_the_issue_strategies():
    assert set(STRATEGIES) == {
        "random",
        "class",
        "lowest_logit",
        "highest_loss",
        "gradient_norm",
        "influence",
        "adaptive",
    }


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_budget_training_ids_and_determinism(strategy, case):
    ds, split, model, _ = case
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sel = select_request(strategy, model, ds, split, budget=25, seed=3, **_opts(strategy))
    ids = sel.request.tensor
    assert len(ids) == 25 and len(torch.unique(ids)) == 25
    assert bool(torch.isin(ids, split.train).all())
    for part in (split.test, split.val, split.reserve):
        assert not bool(torch.isin(ids, part).any())
    assert sel.strategy == strategy and sel.request.meta["strategy"] == strategy
    again = select_request(strategy, model, ds, split, budget=25, seed=3, **_opts(strategy))
    assert again.request.ids == sel.request.ids
    assert (sel.score != sel.score and again.score != again.score) or sel.score == again.score
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # fraction budget: 2 % of the training split
    frac = select_request(strategy, model, ds, split, budget=0.02, seed=3, **_opts(strategy))
    assert len(frac.request) == round(0.02 * len(split.train))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_class_and_controlled_constraints(strategy, case):
    ds, split, model, _ = case
    sel = select_request(strategy, model, ds, split, budget=10, classes=[3], **_opts(strategy))
    assert set(ds.labels_of(sel.request.tensor).tolist()) == {3}
    two = select_request(strategy, model, ds, split, budget=30, classes=[1, 7], **_opts(strategy))
    assert set(ds.labels_of(two.request.tensor).tolist()) <= {1, 7}
    ctrl = split.train[::7][:60]
    c = select_request(strategy, model, ds, split, budget=5, controlled_ids=ctrl, **_opts(strategy))
    assert bool(torch.isin(c.request.tensor, ctrl).all())


def test_random_depends_on_seed_and_class_respects_target(case):
    ds, split, model, _ = case
    a = select_request("random", model, ds, split, budget=20, seed=0)
    b = select_request("random", model, ds, split, budget=20, seed=1)
    assert a.request.ids != b.request.ids
    c = select_request("class", model, ds, split, budget=20, target_class=5)
    assert set(ds.labels_of(c.request.tensor).tolist()) == {5}
    assert c.details["target_class"] == 5


def test_scored_strategies_match_independent_references(case):
    ds, split, model, _ = case
    x, y = ds.tensors(split.train)
    with torch.no_grad():
        z = model(x)
    k = 15
    ref_logit = split.train[torch.argsort(z.gather(1, y[:, None]).squeeze(1))[:k]]
    sel = select_request("lowest_logit", model, ds, split, budget=k)
    assert set(sel.request.ids) == set(ref_logit.tolist())
    ref_loss = split.train[
        torch.argsort(F.cross_entropy(z, y, reduction="none"), descending=True)[:k]
    ]
    sel = select_request("highest_loss", model, ds, split, budget=k)
    assert set(sel.request.ids) == set(ref_loss.tolist())


def test_head_gradient_norm_equals_autograd(case):
    ds, split, model, _ = case
    x, y = ds.tensors(split.train[:6])
    s = sample_scores("gradient_norm", model, x, y)
    s_all = sample_scores("gradient_norm", model, x, y, params="all")
    for i in range(6):
        model.zero_grad()
        F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        head = torch.cat([model.head.weight.grad.flatten(), model.head.bias.grad])
        full = torch.cat([p.grad.flatten() for p in model.parameters()])
        assert float(s[i]) == pytest.approx(float(head.norm()), rel=1e-3)
        assert float(s_all[i]) == pytest.approx(float(full.norm()), rel=1e-3)
    model.zero_grad(set_to_none=True)


def test_influence_matches_an_explicit_hessian_solve(case):
    ds, split, model, _ = case
    xr, yr = ds.tensors(split.val[:40])
    xh, yh = ds.tensors(split.train[:80])
    x, y = ds.tensors(split.train[100:110])
    lam = 0.05
    s, info = influence_scores(model, x, y, xr, yr, xh, yh, damping=lam, cg_iters=2000)
    assert info["cg_neg"] == 0.0
    with torch.no_grad():
        hh, hr, hx = model.features(xh), model.features(xr), model.features(x)
    w0 = torch.cat([model.head.weight, model.head.bias[:, None]], 1).detach().double()

    def loss(w, h, yy):
        return F.cross_entropy(h.double() @ w[:, :-1].T + w[:, -1], yy)

    hess = torch.autograd.functional.hessian(lambda w: loss(w, hh, yh), w0).reshape(
        w0.numel(), w0.numel()
    )
    g_ref = torch.autograd.functional.jacobian(lambda w: loss(w, hr, yr), w0).reshape(-1)
    sol = torch.linalg.solve(hess + lam * torch.eye(w0.numel(), dtype=torch.float64), g_ref)
    for i in range(len(y)):
        gi = torch.autograd.functional.jacobian(
            lambda w, i=i: loss(w, hx[i : i + 1], y[i : i + 1]), w0
        ).reshape(-1)
        assert float(s[i]) == pytest.approx(float(sol @ gi), rel=1e-3, abs=1e-7)


def test_adaptive_keeps_the_most_damaging_candidate(case):
    ds, split, model, tm = case
    sel = select_request(
        "adaptive",
        model,
        ds,
        split,
        budget=20,
        seed=0,
        method="finetune",
        proxy_steps=3,
        proxy_retain=300,
        train_config=tm.config.to_dict(),
    )
    tried = sel.details["candidates"]
    assert {t["candidate"] for t in tried[:5]} == {
        "lowest_logit",
        "highest_loss",
        "gradient_norm",
        "influence",
        "random",
    }
    assert sel.score == max(t["damage"] for t in tried)
    assert sel.details["search"] == "greedy"
    # an exact method is proxied by fine-tuning on the retain subsample
    ex = select_request(
        "adaptive", model, ds, split, budget=20, method="retrain", proxy_steps=2, rounds=1
    )
    assert ex.details["proxy"] == "finetune"


def test_errors_name_the_problem(case):
    ds, split, model, _ = case
    with pytest.raises(RequestError, match="exceeds"):
        select_request("random", model, ds, split, budget=10_000)
    with pytest.raises(RequestError, match=str(int(split.test[0]))):
        select_request("random", model, ds, split, budget=2, controlled_ids=[int(split.test[0])])
    with pytest.raises(ConfigError, match="classes"):
        select_request("random", model, ds, split, budget=2, classes=[10])
    with pytest.raises(ConfigError, match="no option"):
        select_request("random", model, ds, split, budget=2, method="finetune")
    with pytest.raises(ConfigError, match="method"):
        select_request("adaptive", model, ds, split, budget=2)
    with pytest.raises(UnknownNameError, match="lowest_logit"):
        select_request("lowest_logits", model, ds, split, budget=2)
    with pytest.raises(RequestError, match="class 3"):
        select_request("class", model, ds, split, budget=500, target_class=3)
    for bad in (0, 1.5, True, "3", -2):
        with pytest.raises(ConfigError, match="budget"):
            resolve_budget(bad, 100)
    assert resolve_budget(0.5, 101) == 50 and resolve_budget(0.001, 100) == 1


def test_cli_requests(case, tmp_path):
    from obliviate.cli_attacks import register

    ds, split, _, _ = case
    cfg = TrainConfig(epochs=1, lr=0.05, batch_size=64, seed=0)
    tm = train_model(ds, split, "small_cnn", cfg, show_progress=False, evaluate_parts=("test",))
    ck = tmp_path / "ck"
    tm.save(str(ck))
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    out = tmp_path / "req.json"
    r = runner.invoke(
        app,
        [
            "attack",
            "requests",
            "--strategy",
            "lowest_logit",
            "--budget",
            "12",
            "--classes",
            "2,4",
            "--model",
            str(ck),
            "--out",
            str(out),
            "--method",
            "grad_ascent",
        ],
    )
    assert r.exit_code == 0, r.output
    req = ForgetRequest.load(out).validate(split)
    assert len(req) == 12 and set(ds.labels_of(req.tensor).tolist()) <= {2, 4}
    assert "damage after unlearning" in r.output and "acc/test" in r.output
    assert json.loads(out.read_text())["meta"]["strategy"] == "lowest_logit"
    bad = runner.invoke(
        app,
        ["attack", "requests", "--strategy", "random", "--budget", "99999"]
        + ["--model", str(ck), "--out", str(tmp_path / "x.json")],
    )
    assert bad.exit_code == 2 and "exceeds" in bad.output
