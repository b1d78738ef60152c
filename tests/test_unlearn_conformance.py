"""Conformance suite: every registered unlearner passes the same generic checks.

Adding a method adds it here without a new test (scikit-learn's ``check_estimator``, timm's tests
over ``list_models``). The tiny real-data case is scikit-learn's digits (real 8×8 images) with
small_cnn, forgetting every training image of class 0: the forget loss must rise.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from obliviate.data import ForgetRequest, load_dataset, make_split
from obliviate.errors import ConfigError, RequestError
from obliviate.inference import batched_logits
from obliviate.metrics import accuracy
from obliviate.train import TrainConfig, train_model
from obliviate.unlearn import UNLEARNERS, TensorSet, UnlearnTask, create_unlearner, make_task

METHODS = UNLEARNERS.names()


@pytest.fixture(scope="module")
def case():
    ds = load_dataset("digits")
    split = make_split(ds, seed=0, test=0.25, reserve=100, val=50)
    cfg = TrainConfig(epochs=8, lr=0.05, batch_size=64, seed=0)
    tm = train_model(ds, split, "small_cnn", cfg, show_progress=False)
    train_labels = ds.labels_of(split.train)
    req = ForgetRequest(split.train[train_labels == 0])
    return ds, split, tm, req, cfg


def _task(case, seed: int = 0) -> UnlearnTask:
    ds, split, _, req, cfg = case
    return make_task(ds, split, req, seed=seed, train_config=cfg.to_dict())


def _model_for(name, case):
    """The model the method takes (SISA-like methods build their ensemble from the task)."""
    cls = UNLEARNERS.get(name)
    _, _, tm, _, _ = case
    return cls.conformance_model(tm.model, _task(case))


def _state(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", METHODS)
def test_contract(name, case):
    model = _model_for(name, case)
    before = _state(model)
    grads_before = [p.requires_grad for p in model.parameters()]
    task = _task(case)
    u = create_unlearner(name)
    res = u.unlearn(model, task)
    # input untouched
    after = _state(model)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before), "input model was modified"
    assert [p.requires_grad for p in model.parameters()] == grads_before
    # architecture kept
    assert type(res.model) is type(model) and res.model is not model
    new = res.model.state_dict()
    assert {k: tuple(v.shape) for k, v in new.items()} == {
        k: tuple(v.shape) for k, v in before.items()
    }
    assert not res.model.training
    assert res.stats["method"] == name and res.stats["seconds"] >= 0
    # retain-free methods never read retain data; reserve only if tagged
    if "needs_retain" not in u.tags:
        assert task.reads["retain"] == 0, f"{name} is not tagged needs_retain but read retain data"
    if "needs_reserve" not in u.tags:
        assert task.reads["reserve"] == 0, f"{name} read the reserve without the needs_reserve tag"
    # forgetting goes the right way (whole class 0 forgotten): the forget loss rises and the
    # forget accuracy does not (a weak method such as plain fine-tuning may keep the argmax)
    f = task.forget
    loss_before, loss_after = _loss(model, f), _loss(res.model, f)
    assert loss_after > loss_before, f"{name}: forget loss {loss_before:.4f} -> {loss_after:.4f}"
    assert accuracy(res.model, f.x, f.y) <= accuracy(model, f.x, f.y)


def _loss(model, part) -> float:
    return float(F.cross_entropy(batched_logits(model, part.x), part.y))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", METHODS)
def test_deterministic_under_seed(name, case):
    model = _model_for(name, case)
    u = create_unlearner(name)
    a = u.unlearn(model, _task(case, seed=5)).model.state_dict()
    b = u.unlearn(model, _task(case, seed=5)).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), f"{name} is not deterministic under a seed"


@pytest.mark.parametrize("name", METHODS)
def test_config_contract(name):
    cls = UNLEARNERS.get(name)
    u = create_unlearner(name)
    fields = dataclasses.fields(u.config)
    assert fields, f"{name} has no hyper-parameters"
    for f in fields:
        assert f.metadata.get("help"), f"{name}.{f.name} has no help text"
    assert u.clone().get_params() == u.get_params()
    with pytest.raises(ConfigError, match="no_such_option"):
        create_unlearner(name, no_such_option=1)
    assert cls.paper, f"{name} does not cite its paper"
    assert cls.__doc__ and len(cls.__doc__.strip()) > 20


@pytest.mark.parametrize("name", METHODS)
def test_bad_tasks_are_refused(name, case):
    ds, split, tm, req, cfg = case
    u = create_unlearner(name)
    model = _model_for(name, case)
    if "needs_retain" in u.tags:
        no_retain = make_task(ds, split, req, include_retain=False, train_config=cfg.to_dict())
        with pytest.raises(RequestError, match="retain"):
            u.unlearn(model, no_retain)
    with pytest.raises(RequestError, match="reserve"):
        make_task(ds, split, ForgetRequest([int(split.reserve[0])]))
    with pytest.raises(RequestError, match="10000000"):
        make_task(ds, split, ForgetRequest([10_000_000]))


def test_task_rejects_empty_and_overlapping_sets(case):
    ds, split, _, req, _ = case
    t = make_task(ds, split, req)
    f = t.forget
    with pytest.raises(RequestError, match="empty"):
        UnlearnTask(forget=TensorSet.empty_like(f))
    with pytest.raises(RequestError, match="overlap"):
        UnlearnTask(forget=f, _retain=TensorSet(f.x[:3], f.y[:3], f.ids[:3]))
    with pytest.raises(RequestError, match="duplicate"):
        UnlearnTask(forget=TensorSet(f.x[[0, 0]], f.y[[0, 0]], f.ids[[0, 0]]))


def test_registry_lists_tags_and_unknown_name():
    from obliviate.errors import UnknownNameError

    for name in METHODS:
        assert set(UNLEARNERS.meta(name)["tags"]) <= {
            "needs_retain",
            "needs_reserve",
            "exact",
            "needs_ensemble",
            "experimental",
        }
    with pytest.raises(UnknownNameError, match="unknown unlearning method"):
        create_unlearner("forget_everything")


def test_input_model_copy_is_independent(case):
    _, _, tm, _, _ = case
    res = create_unlearner("finetune", epochs=1).unlearn(tm.model, _task(case))
    m2 = copy.deepcopy(res.model)
    with torch.no_grad():
        next(res.model.parameters()).add_(1.0)
    assert not torch.equal(next(m2.parameters()), next(res.model.parameters()))


STOPPABLE = [n for n in METHODS if any(
    f.name == "stop_forget_acc" for f in dataclasses.fields(UNLEARNERS.get(n).Config)
)]  # fmt: skip


def test_the_fine_tuning_family_and_roka_have_the_stopping_rule():
    assert {"grad_ascent", "neggrad_plus", "finetune", "scrub", "rurk", "roka"} <= set(STOPPABLE)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", STOPPABLE)
def test_matched_forgetting_stopping_rule(name, case):
    """stop_forget_acc = 100 holds at the first check: the run ends after eval_every steps and
    says so in its stats."""
    model = _model_for(name, case)
    res = create_unlearner(name, stop_forget_acc=100.0, eval_every=2).unlearn(model, _task(case))
    assert res.stats["steps"] == 2, res.stats
    assert res.stats["stopped_early"] is True
    assert 0.0 <= res.stats["forget_acc_at_stop"] <= 100.0
    with pytest.raises(ConfigError, match="eval_every"):
        create_unlearner(name, eval_every=0)
