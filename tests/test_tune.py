"""The tuner: grid/random search over a method's space, scored by Avg. Gap to gold."""

from __future__ import annotations

import pytest

from obliviate.data import ForgetRequest, load_dataset, make_split
from obliviate.errors import ConfigError
from obliviate.train import TrainConfig, train_model
from obliviate.unlearn import TensorSet, make_task
from obliviate.unlearn.tune import core_metrics, gap_scorer, search_space, tune


@pytest.fixture(scope="module")
def case():
    ds = load_dataset("synthetic", n=600, shape=(1, 12, 12), seed=1)
    split = make_split(ds, seed=0)
    cfg = TrainConfig(epochs=2, batch_size=64, seed=0)
    orig = train_model(ds, split, "small_cnn", cfg, show_progress=False)
    req = ForgetRequest(split.train[:30])
    gold = train_model(ds, split, "small_cnn", cfg, exclude=req, show_progress=False)
    task = make_task(ds, split, req, seed=1, train_config=cfg.to_dict())
    xt, yt = ds.tensors(split.test)
    test = TensorSet(xt, yt, split.test)
    return orig, gold, task, test


def test_core_metrics_of_gold_are_its_own_gap_zero(case):
    _, gold, task, test = case
    gm = core_metrics(gold.model, task, test)
    assert set(gm) == {"acc/retain", "acc/forget", "acc/test", "ua", "mia_efficacy"}
    assert gm["ua"] == pytest.approx(100 - gm["acc/forget"])
    score, _ = gap_scorer(gm, task, test)(gold.model, {})
    assert score == 0.0


def test_grid_search_picks_the_minimum_and_is_deterministic(case):
    orig, gold, task, test = case
    gm = core_metrics(gold.model, task, test)
    space = {"lr": [0.001, 0.05], "epochs": [1]}
    a = tune("finetune", orig.model, task, gap_scorer(gm, task, test), space=space)
    b = tune("finetune", orig.model, task, gap_scorer(gm, task, test), space=space)
    assert len(a.trials) == 2
    assert a.best_score == min(t.score for t in a.trials)
    assert [t.score for t in a.trials] == [t.score for t in b.trials]
    assert a.best_params["epochs"] == 1 and a.best_params["lr"] in (0.001, 0.05)
    r = tune(
        "finetune",
        orig.model,
        task,
        gap_scorer(gm, task, test),
        space=space,
        strategy="random",
        n_trials=1,
    )
    assert len(r.trials) == 1
    with pytest.raises(ConfigError, match="strategy"):
        tune("finetune", orig.model, task, gap_scorer(gm, task, test), space=space, strategy="x")


def test_search_space_only_names_real_options():
    from obliviate.unlearn import UNLEARNERS, create_unlearner

    for name in UNLEARNERS.names():
        fields = set(create_unlearner(name).get_params())
        assert set(search_space(name)) <= fields
    assert search_space("finetune")["lr"]
