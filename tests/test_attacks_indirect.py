"""ROKA's indirect unlearning attack: neighbour rankings against independent computations, the
no-victim-sample guarantee, constraints, determinism, the report and the CLI (digits, seconds)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import typer
from rich.console import Console
from typer.testing import CliRunner

from obliviate.attacks import (
    NEIGHBOUR_MEASURES,
    indirect_attack_report,
    rank_neighbours,
    select_indirect,
)
from obliviate.data import ForgetRequest, load_dataset, make_split
from obliviate.errors import ConfigError
from obliviate.train import TrainConfig, train_model

VICTIM = 8


@pytest.fixture(scope="module")
def case():
    torch.set_num_threads(1)
    ds = load_dataset("digits")
    split = make_split(ds, seed=0, test=0.25, val=100)
    cfg = TrainConfig(epochs=4, lr=0.05, batch_size=64, seed=0)
    tm = train_model(ds, split, "small_cnn", cfg, show_progress=False, evaluate_parts=("test",))
    return ds, split, tm


@pytest.mark.parametrize("by", NEIGHBOUR_MEASURES)
def test_ranking_excludes_the_victim_and_is_sorted(by, case):
    ds, split, tm = case
    r = rank_neighbours(tm.model, ds, split, VICTIM, by=by)
    assert sorted(c for c, _ in r) == [c for c in range(10) if c != VICTIM]
    sims = [s for _, s in r]
    assert sims == sorted(sims, reverse=True)
    assert r == rank_neighbours(tm.model, ds, split, str(VICTIM), by=by)


def test_rankings_match_independent_computations(case):
    ds, split, tm = case
    m = tm.model
    x, y = ds.tensors(split.train)
    with torch.no_grad():
        h = m.features(x).double()
        p = torch.softmax(m(x).double(), 1)
    w = m.head.weight.detach().double()

    def mean(v, c):
        return v[y == c].mean(0)

    contrib = h * w[y]
    for by, vec in (("centroid_cosine", h), ("input_x_gradient", contrib)):
        got = dict(rank_neighbours(m, ds, split, VICTIM, by=by, max_per_class=0))
        for c, s in got.items():
            ref = F.cosine_similarity(mean(vec, VICTIM), mean(vec, c), dim=0)
            assert s == pytest.approx(float(ref), rel=1e-5, abs=1e-6)
    got = dict(rank_neighbours(m, ds, split, VICTIM, by="confusion", max_per_class=0))
    for c, s in got.items():
        ref = 0.5 * (mean(p, VICTIM)[c] + mean(p, c)[VICTIM])
        assert s == pytest.approx(float(ref), rel=1e-5, abs=1e-9)


@pytest.mark.parametrize("by", NEIGHBOUR_MEASURES)
def test_selection_never_contains_a_victim_sample(by, case):
    ds, split, tm = case
    ranking = rank_neighbours(tm.model, ds, split, VICTIM, by=by)
    sel = select_indirect(tm.model, ds, split, VICTIM, by=by)
    labels = ds.labels_of(sel.request.tensor)
    nearest = ranking[0][0]
    assert sel.forget_class == nearest and set(labels.tolist()) == {nearest}
    all_c = split.train[ds.labels_of(split.train) == nearest]
    assert set(sel.request.ids) == set(all_c.tolist())
    s = select_indirect(tm.model, ds, split, VICTIM, by=by, mode="samples", budget=40, seed=1)
    assert len(s.request) == 40 and s.forget_class is None
    assert not bool((ds.labels_of(s.request.tensor) == VICTIM).any())
    assert bool(torch.isin(s.request.tensor, split.train).all())
    again = select_indirect(tm.model, ds, split, VICTIM, by=by, mode="samples", budget=40, seed=1)
    assert again.request.ids == s.request.ids
    b = select_indirect(tm.model, ds, split, VICTIM, by=by, budget=15, seed=2)
    assert len(b.request) == 15 and set(ds.labels_of(b.request.tensor).tolist()) == {nearest}
    assert (
        b.request.ids
        == select_indirect(tm.model, ds, split, VICTIM, by=by, budget=15, seed=2).request.ids
    )


def test_pick_gives_the_attacks_controls(case):
    """``pick``: the farthest class (all of it) or as many random non-victim samples."""
    ds, split, tm = case
    near = select_indirect(tm.model, ds, split, VICTIM)
    far = select_indirect(tm.model, ds, split, VICTIM, pick="farthest")
    assert far.forget_class == near.ranking[-1][0] != near.forget_class
    labels = ds.labels_of(far.request.tensor)
    assert bool((labels == far.forget_class).all())
    assert len(far.request) == int((ds.labels_of(split.train) == far.forget_class).sum())
    rnd = select_indirect(tm.model, ds, split, VICTIM, pick="random", seed=3)
    assert rnd.forget_class is None and len(rnd.request) == len(near.request)
    assert not bool((ds.labels_of(rnd.request.tensor) == VICTIM).any())
    with pytest.raises(ConfigError, match="pick"):
        select_indirect(tm.model, ds, split, VICTIM, pick="middle")


def test_constraints_move_the_choice(case):
    ds, split, tm = case
    ranking = rank_neighbours(tm.model, ds, split, VICTIM)
    first, second = ranking[0][0], ranking[1][0]
    allowed = [c for c in range(10) if c not in (first, VICTIM)]
    sel = select_indirect(tm.model, ds, split, VICTIM, classes=allowed)
    assert sel.forget_class == second
    ctrl = split.train[ds.labels_of(split.train) == VICTIM][:30]  # victims only: nothing to ask
    with pytest.raises(Exception, match="victim"):
        select_indirect(tm.model, ds, split, VICTIM, controlled_ids=ctrl)
    with pytest.raises(ConfigError, match="budget"):
        select_indirect(tm.model, ds, split, VICTIM, mode="samples")
    with pytest.raises(ConfigError, match="by must be"):
        select_indirect(tm.model, ds, split, VICTIM, by="cosine")
    with pytest.raises(ConfigError, match="class"):
        select_indirect(tm.model, ds, split, "eleven")


def test_report_measures_the_victim_drop(case):
    ds, split, tm = case
    rep = indirect_attack_report(
        tm.model,
        ds,
        split,
        VICTIM,
        ["grad_ascent", "retrain"],
        train_config=tm.config.to_dict(),
        seed=0,
        method_options={"grad_ascent": {"epochs": 3, "lr": 0.01}},
    )
    assert [(r.method, r.request) for r in rep.rows] == [
        (m, k) for m in ("grad_ascent", "retrain") for k in ("nearest", "farthest", "random")
    ]
    vic = split.test[ds.labels_of(split.test) == VICTIM]
    xv, yv = ds.tensors(vic)
    with torch.no_grad():
        before = 100.0 * float((tm.model(xv).argmax(1) == yv).double().mean())
    assert rep.victim_acc_before == pytest.approx(before)
    for r in rep.rows:
        assert r.drop == pytest.approx(rep.victim_acc_before - r.victim_acc_after)
    n = len(rep.selection.request)
    assert rep.rows[2].n == n and rep.rows[1].forget_class == rep.ranking[-1][0]
    text = Console(record=True, width=140)
    text.print(rep)
    shown = text.export_text()
    assert "grad_ascent" in shown and "farthest" in shown
    assert rep.to_dict()["rows"][0]["method"] == "grad_ascent"


def test_cli_indirect(case, tmp_path):
    from obliviate.cli_attacks import register

    ds, split, _ = case
    cfg = TrainConfig(epochs=1, lr=0.05, batch_size=64, seed=0)
    tm = train_model(ds, split, "small_cnn", cfg, show_progress=False, evaluate_parts=("test",))
    ck = tmp_path / "ck"
    tm.save(str(ck))
    app = typer.Typer()
    register(app)
    out = tmp_path / "req.json"
    r = CliRunner().invoke(
        app,
        ["attack", "indirect", "--victim-class", "8", "--method", "grad_ascent"]
        + ["--model", str(ck), "--out", str(out), "--by", "confusion"],
    )
    assert r.exit_code == 0, r.output
    req = ForgetRequest.load(out).validate(split)
    assert not bool((ds.labels_of(req.tensor) == VICTIM).any())
    assert "drop (pp)" in r.output and "neighbours of victim class" in r.output
    bad = CliRunner().invoke(
        app, ["attack", "indirect", "--victim-class", "12", "--model", str(ck)]
    )
    assert bad.exit_code == 2 and "out of range" in bad.output
