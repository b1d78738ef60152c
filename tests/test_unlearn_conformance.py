"""Conformance suite: every registered unlearner passes :mod:`obliviate.testing`'s checks.

Adding a method adds it here without a new test (scikit-learn's ``check_estimator``, timm's tests
over ``list_models``): one test per (method, check) on the default synthetic MLP case, plus one
``check_unlearner`` call per method on a real-image case (scikit-learn's digits, 8×8 images, with
small_cnn, forgetting every training image of class 0). Two deliberately broken toy unlearners
show that the checks fail, naming the check.
"""

from __future__ import annotations

import copy
import threading
from functools import cache

import pytest
import torch

from obliviate.data import ForgetRequest, load_dataset, make_split
from obliviate.errors import ConfigError, RequestError, UnknownNameError
from obliviate.testing import (
    CHECK_NAMES,
    ConformanceError,
    check_unlearner,
    default_case,
    iter_checks,
)
from obliviate.testing import __main__ as testing_main
from obliviate.train import TrainConfig, train_model
from obliviate.unlearn import (
    UNLEARNERS,
    GradientConfig,
    GradientUnlearner,
    ce,
    create_unlearner,
    list_unlearners,
    make_task,
)

METHODS = UNLEARNERS.names()
PAIRS = [(name, check) for name in METHODS for check, _ in iter_checks(name)]


@cache
def _checks(name: str) -> dict:
    """The bound checks of one method; they share its standard run across the tests."""
    return dict(iter_checks(name))


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("name", "check"), PAIRS, ids=[f"{n}-{c}" for n, c in PAIRS])
def test_conformance(name, check):
    _checks(name)[check]()


# ----------------------------------------------------------------------- a real-image case


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits")
    split = make_split(ds, seed=0, test=0.25, reserve=100, val=50)
    cfg = TrainConfig(epochs=8, lr=0.05, batch_size=64, seed=0)
    tm = train_model(ds, split, "small_cnn", cfg, show_progress=False)
    req = ForgetRequest(split.train[ds.labels_of(split.train) == 0])
    task = make_task(ds, split, req, seed=0, train_config=cfg.to_dict())
    return ds, split, tm.model, task


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", list_unlearners("image"))  # text-only ones: test_lm_unlearn.py
def test_check_unlearner_on_images(name, digits):
    _, _, model, task = digits
    assert check_unlearner(name, task=task, model=model) == list(_checks(name))


def test_make_task_refuses_reserved_and_unknown_ids(digits):
    ds, split, _, _ = digits
    with pytest.raises(RequestError, match="reserve"):
        make_task(ds, split, ForgetRequest([int(split.reserve[0])]))
    with pytest.raises(RequestError, match="10000000"):
        make_task(ds, split, ForgetRequest([10_000_000]))


def test_input_model_copy_is_independent(digits):
    _, _, model, task = digits
    res = create_unlearner("finetune", epochs=1).unlearn(model, task)
    m2 = copy.deepcopy(res.model)
    with torch.no_grad():
        next(res.model.parameters()).add_(1.0)
    assert not torch.equal(next(m2.parameters()), next(res.model.parameters()))


# ------------------------------------------------------------------------ broken toy methods


class ToyAscent(GradientUnlearner):
    """Gradient ascent on the forget set (a correct toy, the base of the broken ones)."""

    Config = GradientConfig
    name = "toy_ascent"
    paper = "test toy"
    driver = "forget"

    def compute_loss(self, model, forget, retain):
        return -ce(model, forget)


class MutatesInput(ToyAscent):
    """Broken: copies its result back into the model it was given."""

    def unlearn(self, model, task):
        res = super().unlearn(model, task)
        model.load_state_dict(res.model.state_dict())
        return res


class IgnoresSeed(ToyAscent):
    """Broken: adds weight noise from a generator seeded from the clock, not task.seed."""

    def after_step(self, model, step):
        g = torch.Generator()
        g.seed()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1e-3 * torch.randn(p.shape, generator=g))


def test_a_correct_toy_passes():
    assert check_unlearner(ToyAscent) == list(CHECK_NAMES)


@pytest.mark.parametrize(
    ("toy", "check"), [(MutatesInput, "input_untouched"), (IgnoresSeed, "deterministic")]
)
def test_a_broken_toy_fails_naming_the_check(toy, check):
    with pytest.raises(ConformanceError, match=check) as err:
        check_unlearner(toy)
    assert isinstance(err.value, AssertionError)
    assert set(err.value.failures) == {check}, err.value.failures
    with pytest.raises(ConformanceError, match=check):
        dict(iter_checks(toy))[check]()


class Hangs(ToyAscent):
    """Broken: blocks until released (a hang)."""

    release = threading.Event()

    def _unlearn(self, model, task):
        self.release.wait(60)
        return super()._unlearn(model, task)


def test_a_hanging_toy_fails_the_hang_guard():
    try:
        with pytest.raises(ConformanceError, match=r"finishes: .*within 0.2 s \(hang guard\)"):
            dict(iter_checks(Hangs, timeout_s=0.2))["finishes"]()
    finally:
        Hangs.release.set()


def test_check_unlearner_refuses_bad_arguments():
    case = default_case()
    with pytest.raises(ConfigError, match="both task= and model="):
        check_unlearner("finetune", task=case.task)
    with pytest.raises(ConfigError, match="Unlearner subclass"):
        check_unlearner(object)
    with pytest.raises(UnknownNameError, match="unknown unlearning method"):
        check_unlearner("forget_everything")
    with pytest.raises(UnknownNameError, match="unknown unlearning method"):
        create_unlearner("forget_everything")


def test_config_overrides_and_instances_are_checked():
    with pytest.raises(ConfigError, match="no_such_option"):
        check_unlearner("finetune", config={"no_such_option": 1})
    assert check_unlearner(create_unlearner("grad_ascent", epochs=2)) == list(
        _checks("grad_ascent")
    )


def test_python_m_obliviate_testing_prints_a_table(capsys, monkeypatch):
    assert testing_main.main(["grad_ascent", "ssd"]) == 0
    out = capsys.readouterr().out
    assert out.split()[: 1 + len(CHECK_NAMES)] == ["method", *CHECK_NAMES]
    assert "2 of 2 methods pass every check" in out
    with pytest.raises(UnknownNameError):
        testing_main.main(["forget_everything"])
    # a failing method: exit status 1, FAIL in the table, the reason named
    monkeypatch.setattr(testing_main, "iter_checks", lambda n, **kw: iter_checks(MutatesInput))
    assert testing_main.main(["grad_ascent"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "grad_ascent / input_untouched: the input model was modified" in out
    assert "0 of 1 methods pass every check" in out


def test_the_fine_tuning_family_and_roka_have_the_stopping_rule():
    stoppable = {n for n, c in PAIRS if c == "stopping_rule"}
    assert {"grad_ascent", "neggrad_plus", "finetune", "scrub", "rurk", "roka"} <= stoppable
