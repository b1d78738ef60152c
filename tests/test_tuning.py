"""Tuning: search spaces declared next to each method, the Optuna search (reproducible, resumable
from its SQLite study), the scenario ``tune:`` step (tuning seed apart from the report seeds,
chosen params recorded in rows, never a tuning row) and the three suite sizes."""

from __future__ import annotations

import dataclasses
import textwrap

import pytest

from obliviate.data import ForgetRequest, load_dataset, make_split
from obliviate.errors import ConfigError
from obliviate.scenarios import (
    ResultsStore,
    Scenario,
    ScenarioError,
    list_suites,
    load_suite,
    run_scenario,
    scenario_from_yaml,
    suite_files,
)
from obliviate.scenarios.suites import SUITE_SIZES, file_sizes
from obliviate.train import TrainConfig, train_model
from obliviate.unlearn import UNLEARNERS, TensorSet, list_unlearners, make_task
from obliviate.unlearn.space import FloatRange, IntRange, as_distribution, is_grid
from obliviate.unlearn.tune import core_metrics, gap_scorer, resolve_space, tune

# --------------------------------------------------------------------------- spaces


def test_every_declared_space_is_typed_and_names_real_options():
    declared = 0
    for name in UNLEARNERS.names():
        cls = UNLEARNERS.get(name)
        space = getattr(cls, "search_space", None) or {}
        fields = {f.name for f in dataclasses.fields(cls.Config)}
        assert set(space) <= fields, (name, set(space) - fields)
        for k, d in space.items():
            assert isinstance(d, list | FloatRange | IntRange) and d, (name, k)
        declared += bool(space)
    assert declared >= 16


def test_distributions_from_plain_values_and_bad_ones():
    assert as_distribution([1, 2]) == [1, 2]
    assert as_distribution({"low": 1e-3, "high": 0.1, "log": True}) == FloatRange(1e-3, 0.1, True)
    assert as_distribution({"low": 1, "high": 5}) == IntRange(1, 5)
    for bad in ([], {"low": 1.0, "high": 0.5}, {"low": 0.0, "high": 1.0, "log": True},
                {"low": 1, "hi": 2}, "abc"):  # fmt: skip
        with pytest.raises(ConfigError):
            as_distribution(bad)
    sp = resolve_space("finetune", {"epochs": None, "max_steps": [10, 20]})
    assert "epochs" not in sp and sp["max_steps"] == [10, 20] and isinstance(sp["lr"], FloatRange)
    assert not is_grid(sp)
    with pytest.raises(ConfigError, match="no option 'nope'"):
        resolve_space("finetune", {"nope": [1]})


# --------------------------------------------------------------------------- the search


@pytest.fixture(scope="module")
def case():
    ds = load_dataset("synthetic", n=400, shape=(1, 8, 8), seed=1)
    split = make_split(ds, seed=0)
    cfg = TrainConfig(epochs=1, batch_size=64, seed=0)
    orig = train_model(ds, split, "small_cnn", cfg, show_progress=False)
    req = ForgetRequest(split.train[:20])
    gold = train_model(ds, split, "small_cnn", cfg, exclude=req, show_progress=False)
    task = make_task(ds, split, req, seed=1, train_config=cfg.to_dict())
    xt, yt = ds.tensors(split.test)
    test = TensorSet(xt, yt, split.test)
    return orig.model, task, gap_scorer(core_metrics(gold.model, task, test), task, test)


def test_tpe_search_is_reproducible_and_a_stored_study_resumes(case, tmp_path):
    model, task, score = case
    space = {"lr": FloatRange(1e-3, 0.1, log=True), "epochs": [1]}
    a = tune("finetune", model, task, score, space=space, strategy="tpe", n_trials=3, seed=4)
    b = tune("finetune", model, task, score, space=space, strategy="tpe", n_trials=3, seed=4)
    assert a.sampler == "tpe" and len(a.trials) == 3
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert [t.score for t in a.trials] == [t.score for t in b.trials]
    assert a.best_score == min(t.score for t in a.trials)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    kw = {"space": space, "strategy": "tpe", "seed": 4, "storage": url, "study_name": "s"}
    first = tune("finetune", model, task, score, n_trials=2, **kw)
    assert [t.params for t in first.trials] == [t.params for t in a.trials[:2]]
    again = tune("finetune", model, task, score, n_trials=3, **kw)  # resumes: one new trial
    assert [t.params for t in again.trials[:2]] == [t.params for t in first.trials]
    assert len(again.trials) == 3 and (tmp_path / "study.db").exists()


def test_a_grid_is_enumerated_without_repeats(case):
    model, task, score = case
    space = {"lr": [0.01, 0.05], "epochs": [1, 2]}
    r = tune("finetune", model, task, score, space=space, n_trials=0)
    assert r.sampler == "grid" and len(r.trials) == 4
    assert len({tuple(sorted(t.params.items())) for t in r.trials}) == 4


# --------------------------------------------------------------------------- the tune: step

BASE = {
    "name": "tuned",
    "dataset": {"name": "digits"},
    "split": {"seed": 0, "test": 0.25, "reserve": 100, "val": 50},
    "training": {"epochs": 1, "lr": 0.05, "batch_size": 64},
    "requests": [{"ids": [0, 1, 3, 4, 5, 6]}],
    "methods": [{"name": "finetune", "config": {"epochs": 1}}, {"name": "retrain"}],
    "audit": {"metrics": ["accuracy", "mia_efficacy", "avg_gap", "cost"]},
    "seeds": [1],
    "tune": {"seed": 0, "trials": 2, "space": {"finetune": {"lr": [0.01, 0.05]}}},
}


def _problems(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(ScenarioError) as ei:
        scenario_from_yaml(textwrap.dedent(text), origin="scn.yaml")
    return [(ln, key, msg) for _, ln, key, msg in ei.value.problems]


def test_tune_step_errors_name_key_and_line():
    got = _problems(
        """\
        name: t
        dataset: {name: digits}
        requests: {ids: [1]}
        methods: [{name: finetune}, {name: retrain}]
        seeds: [0, 1]
        tune:
          seed: 0
          scorer: nope
          methods: [finetune, retrain, ghost]
          space: {finetune: {lrr: [1]}}
        """
    )
    keys = {k: (ln, msg) for ln, k, msg in got}
    assert (
        keys["tune.seed"][0] == 7 and "tuning seed 0 is also a report seed" in keys["tune.seed"][1]
    )
    assert "[0, 1]" in keys["tune.seed"][1]
    assert "unknown scorer" in keys["tune.scorer"][1]
    assert "declares no search space" in keys["tune.methods[1]"][1]
    assert "no method 'ghost'" in keys["tune.methods[2]"][1]
    assert keys["tune.space.finetune"][0] == 10 and "lrr" in keys["tune.space.finetune"][1]


def test_tuned_run_reports_only_other_seeds_and_records_the_choice(tmp_path):
    db, cache = tmp_path / "r.db", tmp_path / "c"
    res = run_scenario(Scenario.from_dict(BASE), results=db, cache=cache, show_progress=False)
    rows = ResultsStore(db).rows("tuned")
    assert res.rows_written == 4 and {r["seed"] for r in rows} == {1}
    (ft,) = [r for r in rows if r["method"] == "finetune"]
    tuned = ft["info"]["tuned"]
    assert tuned["seed"] == 0 and tuned["trials"] == 2 and tuned["sampler"] == "grid"
    assert (
        tuned["params"]["lr"] in (0.01, 0.05)
        and ft["info"]["params"]["lr"] == tuned["params"]["lr"]
    )
    assert tuned["space"]["lr"] == [0.01, 0.05]
    assert "tuned" not in next(r for r in rows if r["method"] == "retrain")["info"]
    assert list((cache / "studies").glob("*.db")) and res.cache["misses"]["tuned"] == 1
    again = run_scenario(Scenario.from_dict(BASE), results=db, cache=cache, show_progress=False)
    assert again.rows_written == 0 and again.cache["hits"]["tuned"] == 1
    # a new search space is a new tuning record: the finetune row is recomputed (its hash moved)
    new = {**BASE, "tune": {**BASE["tune"], "space": {"finetune": {"lr": [0.01, 0.2]}}}}
    third = run_scenario(Scenario.from_dict(new), results=db, cache=cache, show_progress=False)
    assert third.rows_written == 1
    row = next(r for r in ResultsStore(db).rows("tuned") if r["method"] == "finetune")
    assert row["config_hash"] != ft["config_hash"]
    with pytest.raises(ConfigError, match="tuning seed 0 is also a report seed"):
        run_scenario(Scenario.from_dict(BASE), results=db, cache=cache, seeds=[0, 1])


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("suite", list_suites())
def test_every_suite_file_defines_quick_full_and_paper(suite):
    for path in suite_files(suite):
        assert set(SUITE_SIZES) <= set(file_sizes(path)), path
    assert [s.name for s in load_suite(suite, "paper")] == [s.name for s in load_suite(suite)]


def test_methods_suite_tunes_every_method_on_seed_0_and_reports_1_to_3():
    for size in ("full", "paper"):
        for scn in load_suite("methods", size):
            assert scn.tune is not None and scn.tune.seed == 0 and scn.seeds == [1, 2, 3]
            assert {m.name for m in scn.methods} == set(list_unlearners("image")), scn.name
    assert {s.name for s in load_suite("methods")} == {
        "methods-small", "methods-class-half", "methods-random"
    }  # fmt: skip
    big = {s.name: s for s in load_suite("methods", "paper")}["methods-random"]
    assert big.split.val == 0.2 and big.split.train is None  # 48 000 training images


def test_bench_size_options(tmp_path):
    from typer.testing import CliRunner

    from obliviate.cli import app

    out = CliRunner().invoke(app, ["bench", "methods", "--quick", "--size", "paper"])
    assert out.exit_code == 2 and "--quick means --size quick" in out.output
    out = CliRunner().invoke(app, ["bench", "methods", "--size", "huge"])
    assert out.exit_code == 2 and "suite size must be one of" in out.output
