"""Residual-knowledge probe: a constructed case with a known answer (found / gold_also), agreement
with the residual metric, the saved inputs, errors, and the ``obliviate attack probe`` CLI."""

from __future__ import annotations

import json

import pytest
import safetensors.torch
import torch
import typer
from torch import nn
from typer.testing import CliRunner

from obliviate.attacks import probe
from obliviate.data import ForgetRequest, load_dataset, make_split
from obliviate.errors import ConfigError, UnknownNameError
from obliviate.metrics import residual_knowledge
from obliviate.train import TrainConfig, train_model
from obliviate.unlearn import TensorSet


def margin_model(offset: float, a: float = 1.0) -> nn.Module:
    """2 classes on 1×4×4 inputs: z₁ − z₀ = a·(mean(x) − 0.5) − offset.

    Class 1 is the forgotten label. The model predicts it exactly where mean(x) > 0.5 + offset/a,
    so within an ℓ∞ ball of radius τ around a constant image v it is reachable iff
    a·(v + τ − 0.5) > offset (PGD raising every pixel gets there)."""
    m = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with torch.no_grad():
        m[1].weight.zero_()
        m[1].weight[1].fill_(a / 16)
        m[1].bias.copy_(torch.tensor([0.0, -a * 0.5 - offset]))
    return m


def const_images(values: list[float]) -> torch.Tensor:
    return torch.tensor(values).view(-1, 1, 1, 1).expand(-1, 1, 4, 4).clone()


# unlearned: offset 0.02 (recognises class 1 a little above 0.52); gold: offset 0.2 (needs 0.7)
UNLEARNED, GOLD = margin_model(0.02), margin_model(0.2)
X = const_images([0.5, 0.75, 0.2])  # expected found: T, T, F; gold_also: F, T, F
Y = torch.ones(3, dtype=torch.long)
IDS = torch.tensor([10, 11, 12])


def test_known_answer_pgd():
    res = probe(UNLEARNED, GOLD, (X, Y, IDS), taus=(0.0, 0.03), kind="pgd", c=4, seed=0)
    p0, p = res.at(0.0), res.at(0.03)
    # τ = 0: the inputs themselves; sample 0 sits just below the unlearned boundary
    assert p0.found.tolist() == [False, True, False]
    assert p0.gold_also.tolist() == [False, True, False]
    # τ = 0.03: PGD lifts sample 0 over the unlearned boundary (0.53 > 0.52) but not gold's (0.7)
    assert p.found.tolist() == [True, True, False]
    assert p.gold_also.tolist() == [False, True, False]
    assert p.n_found_not_gold == 1
    assert p.hits_unlearned.tolist()[0] == 4 and p.hits_gold.tolist()[0] == 0
    # the best inputs stay in the τ-ball and in [0, 1], and are recognised by the unlearned model
    assert float((p.best_x - X).abs().max()) <= 0.03 + 1e-6
    assert float(p.best_x.min()) >= 0 and float(p.best_x.max()) <= 1
    assert bool((UNLEARNED(p.best_x[:2]).argmax(1) == 1).all())
    assert bool((p.best_margin[:2] > 0).all()) and float(p.best_margin[2]) < 0
    # r_τ from the same hits: sample 1 has gold hits (r = 1), sample 0 and 2 have none
    assert p.residual.n_used == 1 and p.residual.mean == pytest.approx(1.0)
    assert p.residual.n_excluded_unlearned_hits == 1


def test_noise_does_not_find_what_pgd_finds():
    res = probe(UNLEARNED, GOLD, TensorSet(X, Y, IDS), taus=(0.03,), kind="uniform", c=50)
    # uniform noise in the ball averages out: the mean stays near 0.5 (std ≈ 0.004), below 0.52
    assert res.at(0.03).found.tolist() == [False, True, False]


@pytest.mark.parametrize("kind", ["gaussian", "pgd"])
def test_hits_agree_with_the_residual_metric(kind):
    torch.manual_seed(0)
    u = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    g = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x = torch.rand(7, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    res = probe(u, g, (x, y, torch.arange(7)), taus=(0.1,), kind=kind, c=6, seed=5, batch_size=12)
    ref = residual_knowledge(u, g, x, y, 0.1, kind, c=6, seed=5, batch_size=12)
    assert torch.equal(res.at(0.1).hits_unlearned, ref.hits_unlearned)
    assert torch.equal(res.at(0.1).hits_gold, ref.hits_gold)
    again = probe(u, g, (x, y, torch.arange(7)), taus=(0.1,), kind=kind, c=6, seed=5, batch_size=12)
    assert torch.equal(again.at(0.1).best_x, res.at(0.1).best_x)


def test_save_writes_inputs_and_summary(tmp_path):
    out = tmp_path / "probe"
    res = probe(UNLEARNED, GOLD, (X, Y, IDS), taus=(0.0, 0.03), c=3, out=out)
    assert res.out == out
    t = safetensors.torch.load_file(str(out / "inputs.safetensors"))
    assert torch.equal(t["ids"], IDS) and torch.equal(t["tau1.best_x"], res.at(0.03).best_x)
    assert t["tau1.found"].tolist() == [True, True, False]
    s = json.loads((out / "probe.json").read_text())
    assert s["taus"][1]["found_not_gold"] == 1 and s["samples"][0]["id"] == 10
    assert s["samples"][0]["found"] == [False, True]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["probe"]  # no temp leftovers


def test_errors():
    with pytest.raises(ConfigError, match="steps"):
        probe(UNLEARNED, GOLD, (X, Y, IDS), kind="gaussian", steps=5)
    with pytest.raises(ConfigError, match="c must be"):
        probe(UNLEARNED, GOLD, (X, Y, IDS), c=0)
    with pytest.raises(UnknownNameError):
        probe(UNLEARNED, GOLD, (X, Y, IDS), kind="cw")
    with pytest.raises(ConfigError, match="ids"):
        probe(UNLEARNED, GOLD, (X, Y, IDS[:2]))
    with pytest.raises(ConfigError, match="TensorSet"):
        probe(UNLEARNED, GOLD, X)


def test_cli_probe_on_memorised_mislabelled_samples(tmp_path, monkeypatch):
    """The original memorises 5 training images given a wrong label; gold never saw them. The
    unlearned model here is the original itself (nothing unlearned). On the clean inputs the
    original shows the wrong label for few of them, but PGD inside τ = 0.1 recovers it for all,
    and the gold model never predicts it on those inputs: residual knowledge, by construction."""
    from obliviate.checkpoint import save_checkpoint
    from obliviate.cli_attacks import register

    torch.set_num_threads(1)
    base = load_dataset("digits")
    labels = base.labels.clone()
    flip = torch.arange(0, 60, 10)  # relabelled to (y + 5) mod 10
    labels[flip] = (labels[flip] + 5) % 10
    ds = type(base)(base.images, labels, base.class_names, base.ids, name="digits-flipped")
    split = make_split(ds, seed=0, test=0.25)
    req = ForgetRequest(split.train[torch.isin(split.train, ds.ids[flip])])
    cfg = TrainConfig(epochs=20, lr=0.05, batch_size=64, seed=0)
    orig = train_model(ds, split, "small_cnn", cfg, show_progress=False, evaluate_parts=())
    gold = train_model(
        ds, split, "small_cnn", cfg, exclude=req, show_progress=False, evaluate_parts=()
    )
    forget = (*ds.tensors(req.tensor), req.tensor)
    res = probe(orig.model, gold.model, forget, taus=(0.0, 0.1), c=8, steps=5, seed=0)
    n = len(req)
    assert res.at(0.0).n_found < n  # the clean inputs hide most of it
    assert res.at(0.1).n_found == n and res.at(0.1).n_found_not_gold == n
    assert int(res.at(0.1).hits_gold.sum()) == 0
    save_checkpoint(tmp_path / "u", orig.model, split=split, dataset=ds)
    save_checkpoint(tmp_path / "g", gold.model, split=split, dataset=ds, request=req)
    req.save(tmp_path / "req.json")
    # the flipped copy is not a named dataset: hand it to the CLI for this test only
    from obliviate import checkpoint as ckmod

    app = typer.Typer()
    register(app)
    monkeypatch.setattr(ckmod, "dataset_for", lambda ck: ds)
    r = CliRunner().invoke(
        app,
        ["attack", "probe", "--unlearned", str(tmp_path / "u"), "--gold", str(tmp_path / "g")]
        + ["--request", str(tmp_path / "req.json"), "--tau", "0", "--tau", "0.05"]
        + ["--c", "4", "--steps", "3", "--out", str(tmp_path / "p")],
    )
    assert r.exit_code == 0, r.output
    assert "found, not gold" in r.output and (tmp_path / "p" / "probe.json").exists()
    bad = CliRunner().invoke(
        app,
        ["attack", "probe", "--unlearned", str(tmp_path / "u"), "--gold", str(tmp_path / "g")]
        + ["--request", str(tmp_path / "nope.json")],
    )
    assert bad.exit_code == 2 and "does not exist" in bad.output
