"""Scenarios: schema errors with file lines, the runner's artifact cache (hits and invalidation),
request sequences with model versions and a ledger, the exact row format, suites and the CLI.

Tiny real data: sklearn digits (8×8), small_cnn, one epoch — each run takes seconds.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from obliviate.scenarios import (
    ResultsStore,
    ScenarioError,
    list_suites,
    load_scenario,
    load_suite,
    run_scenario,
    scenario_from_yaml,
)

#: training ids of digits under make_split(seed=0, test=0.25, reserve=100, val=50)
TRAIN_IDS_A = [0, 1, 3, 4, 5, 6]
TRAIN_IDS_B = [7, 8, 9]

BASE = {
    "name": "tiny",
    "dataset": {"name": "digits"},
    "split": {"seed": 0, "test": 0.25, "reserve": 100, "val": 50},
    "training": {"epochs": 1, "lr": 0.05, "batch_size": 64},
    "requests": [{"ids": TRAIN_IDS_A}],
    "methods": [{"name": "finetune", "config": {"epochs": 1}}],
    "audit": {
        "metrics": ["accuracy", "mia_efficacy", "avg_gap", "residual_knowledge", "cost"],
        "taus": [0.03],
        "c": 5,
    },
    "seeds": [0],
}

ROW_KEYS = {
    "scenario", "step", "step_index", "method", "variant", "seed", "config_hash", "metrics",
    "timings", "info", "versions", "created",
}  # fmt: skip
LEDGER_KEYS = {
    "scenario", "seed", "step_index", "request_hash", "request_size", "request_source", "method",
    "model_version", "parent_version", "metrics_summary",
}  # fmt: skip


def write(tmp: Path, name: str, data: dict | str) -> Path:
    p = tmp / name
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return p


def run(tmp: Path, scn: dict, **kw):
    path = write(tmp, f"{scn['name']}.yaml", scn)
    return run_scenario(
        path, results=tmp / "res.db", cache=tmp / "cache", show_progress=False, **kw
    )


# --------------------------------------------------------------------------- schema errors


def problems(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(ScenarioError) as ei:
        scenario_from_yaml(textwrap.dedent(text), origin="scn.yaml")
    return [(ln, key, msg) for _, ln, key, msg in ei.value.problems]


def test_unknown_key_and_wrong_type_name_key_and_line():
    got = problems(
        """\
        name: t
        dataset: {name: digits}
        requests:
          - ids: [1, 2]
        audit:
          taus: [0.03]
          perturbaton: gaussian
        seeds: [0, x]
        """
    )
    assert (7, "audit.perturbaton", "unknown key") in got
    assert any(ln == 8 and key == "seeds[1]" and "integer" in msg for ln, key, msg in got)


def test_bad_request_forms_point_at_their_lines():
    got = problems(
        """\
        name: t
        dataset: {name: digits}
        requests:
          - ids: [1, 2]
          - strategy: random
            budget: 1.5
          - budgett: 3
          - ids: [1, two]
        """
    )
    by_key = {key: (ln, msg) for ln, key, msg in got}
    assert by_key["requests[1].budget"][0] == 6 and "(0, 1)" in by_key["requests[1].budget"][1]
    assert by_key["requests[2]"][0] == 7 and "a request is one of" in by_key["requests[2]"][1]
    assert by_key["requests[3].ids[1]"][0] == 8


def test_semantic_errors_name_option_and_line():
    got = problems(
        """\
        name: t
        dataset: {name: digits}
        training:
          epochs: 1
          lr: fast
          epocs: 2
        requests: {ids: [1, 2]}
        methods:
          - name: finetune
            config: {lr: 0.01, bogus: 1}
          - name: no_such_method
        audit:
          metrics: [accuracy, nope]
          taus: [2.0]
        """
    )
    by_key = {key: (ln, msg) for ln, key, msg in got}
    assert by_key["training.lr"][0] == 5 and "'lr'" in by_key["training.lr"][1]
    assert by_key["training.epocs"][0] == 6 and "unknown option" in by_key["training.epocs"][1]
    assert by_key["methods[0].config.bogus"][0] == 10
    assert by_key["methods[1].name"][0] == 11 and "finetune" in by_key["methods[1].name"][1]
    assert by_key["audit.metrics[1]"][0] == 13
    assert by_key["audit.taus[0]"][0] == 14


def test_audit_section_is_audit_config_without_seed_and_device():
    got = problems(
        """\
        name: t
        dataset: {name: digits}
        requests: {ids: [1, 2]}
        audit:
          seed: 3
          device: cuda
        """
    )
    by_key = {key: (ln, msg) for ln, key, msg in got}
    assert by_key["audit.seed"][0] == 5 and "`seeds`" in by_key["audit.seed"][1]
    assert by_key["audit.device"][0] == 6 and "`device`" in by_key["audit.device"][1]
    text = "name: t\ndataset: {name: digits}\nrequests: {ids: [1]}\naudit: {n_max_mia: 0}\n"
    with pytest.raises(ScenarioError, match=r"audit\.n_max_mia: n_max_mia must be an integer"):
        scenario_from_yaml(text)
    # options that AuditConfig adds reach the run; at their defaults they leave the dump (and so
    # every config hash) as it was
    head = "name: t\ndataset: {name: digits}\nrequests: {ids: [1]}\n"
    plain = scenario_from_yaml(head)
    same = scenario_from_yaml(head + "audit: {lira_k: 4, mia_feature: prob}\n")
    assert same.config_hash() == plain.config_hash()
    assert set(plain.audit.model_dump()) == {
        "taus", "perturbation", "c", "metrics", "residual_max_samples", "contamination_k",
        "n_max_mia", "attack_kw",
    }  # fmt: skip
    other = scenario_from_yaml(head + "audit: {mia_feature: loss}\n")
    assert other.audit.model_dump()["mia_feature"] == "loss"
    assert other.config_hash() != plain.config_hash()
    cfg = other.audit.to_config(seed=7, device="cpu")
    assert (cfg.seed, cfg.mia_feature, cfg.taus) == (7, "loss", [0.03])


def test_message_carries_file_and_line(tmp_path):
    p = write(tmp_path, "s.yaml", "name: t\ndataset: {name: digits}\nrequests: {ids: [1]}\nx: 1\n")
    with pytest.raises(ScenarioError, match=r"s\.yaml:4: x: unknown key"):
        load_scenario(p)


def test_extends_and_sizes_report_the_line_of_the_file_that_set_the_value(tmp_path):
    write(tmp_path, "base.yaml", "dataset: {name: digits}\nrequests: {ids: [1]}\nseeds: [0]\n")
    child = write(
        tmp_path,
        "child.yaml",
        "extends: base.yaml\nname: c\nsizes:\n  quick:\n    seeds: [0, 1]\n"
        "    training: {epochs: bad}\n",
    )
    assert load_scenario(child).seeds == [0]
    with pytest.raises(ScenarioError) as ei:
        load_scenario(child, size="quick")
    (f, ln, key, _), = ei.value.problems  # fmt: skip
    assert (Path(f).name, ln, key) == ("child.yaml", 6, "training.epochs")
    with pytest.raises(ScenarioError, match="unknown size 'huge'"):
        load_scenario(child, size="huge")


def test_duplicate_keys_and_merge_keys_are_refused():
    with pytest.raises(ScenarioError, match=r"scn.yaml:2: name: duplicate key"):
        scenario_from_yaml("name: a\nname: b\n", origin="scn.yaml")
    with pytest.raises(ScenarioError, match="merge keys"):
        scenario_from_yaml("a: &x {name: a}\nb:\n  <<: *x\n", origin="scn.yaml")


# --------------------------------------------------------------------------- runner + cache


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scn")
    res = run(tmp, BASE)
    return tmp, res


def test_rows_have_the_exact_format(first_run):
    tmp, res = first_run
    rows = ResultsStore(tmp / "res.db").rows("tiny")
    assert [(r["step"], r["method"]) for r in rows] == [
        ("original", "original"),
        ("gold", "gold"),
        ("unlearn", "finetune"),
    ]
    for r in rows:
        assert set(r) == ROW_KEYS
        assert r["step_index"] == 0 and r["variant"] == "" and r["seed"] == 0
        assert set(r["timings"]) == {"seconds", "speedup"} and r["timings"]["seconds"] > 0
        m = r["metrics"]
        for k in ("acc/retain", "acc/test", "acc/forget", "ua", "mia_efficacy", "avg_gap"):
            assert isinstance(m[k], float), (r["step"], k, m[k])
        assert set(m["per_class/test"]) == {str(c) for c in range(10)}
        assert set(r["versions"]) == {"obliviate", "torch", "dataset"}
        assert r["info"]["request_size"] == len(TRAIN_IDS_A)
    u = rows[2]
    assert "r_tau@0.03/mean" in u["metrics"]
    assert u["timings"]["speedup"] == pytest.approx(
        rows[1]["timings"]["seconds"] / u["timings"]["seconds"]
    )
    assert rows[1]["metrics"]["avg_gap"] == 0.0  # gold against itself
    assert res.rows_written == 3 and res.rows_skipped == 0


def test_second_run_reuses_every_artifact_and_row(first_run):
    tmp, _ = first_run
    res = run(tmp, BASE)
    assert res.cache["misses"] == {}
    assert res.cache["hits"] == {"original": 1, "request": 1, "gold": 1, "unlearned": 1}
    assert res.rows_written == 0 and res.rows_skipped == 3


def test_changed_method_config_recomputes_only_the_unlearned_model(first_run):
    tmp, _ = first_run
    before = {r["step"]: r for r in ResultsStore(tmp / "res.db").rows("tiny")}
    changed = {**BASE, "methods": [{"name": "finetune", "config": {"epochs": 1, "lr": 0.002}}]}
    res = run(tmp, changed)
    assert res.cache["misses"] == {"unlearned": 1}
    assert res.cache["hits"] == {"original": 1, "request": 1, "gold": 1}
    after = {r["step"]: r for r in ResultsStore(tmp / "res.db").rows("tiny")}
    assert after["unlearn"]["config_hash"] != before["unlearn"]["config_hash"]
    assert after["gold"]["config_hash"] == before["gold"]["config_hash"]
    assert len(ResultsStore(tmp / "res.db").rows("tiny")) == 3  # replaced, not duplicated


def test_changed_training_recipe_recomputes_everything_downstream(first_run):
    tmp, _ = first_run
    changed = {**BASE, "training": {**BASE["training"], "lr": 0.04}}
    res = run(tmp, changed)
    assert res.cache["hits"] == {"request": 1}  # explicit ids do not depend on the model
    assert res.cache["misses"] == {"original": 1, "gold": 1, "unlearned": 1}


def test_two_request_sequence_gives_two_versions_and_a_ledger(tmp_path):
    scn = {
        **BASE,
        "name": "seq",
        "requests": [{"ids": TRAIN_IDS_A}, {"ids": TRAIN_IDS_B, "name": "second"}],
    }
    res = run(tmp_path, scn)
    assert res.cache["misses"] == {"original": 1, "request": 2, "gold": 2, "unlearned": 2}
    store = ResultsStore(tmp_path / "res.db")
    led = store.ledger("seq")
    assert len(led) == 2 and all(set(e) == LEDGER_KEYS for e in led)
    assert [(e["step_index"], e["model_version"], e["parent_version"]) for e in led] == [
        (0, "v1", "v0"),
        (1, "v2", "v1"),
    ]
    assert [e["request_size"] for e in led] == [6, 3]
    assert all(e["request_source"] == "ids" and e["method"] == "finetune" for e in led)
    assert led[0]["request_hash"] != led[1]["request_hash"]
    assert isinstance(led[1]["metrics_summary"]["acc/test"], float)
    unl = [r for r in store.rows("seq") if r["step"] == "unlearn"]
    assert [r["info"]["model_version"] for r in unl] == ["v1", "v2"]
    # the audit of step 1 uses the cumulative forget set (both requests)
    assert [r["info"]["cumulative_size"] for r in unl] == [6, 9]


def test_a_request_repeating_an_earlier_id_is_refused_naming_it(tmp_path):
    scn = {**BASE, "name": "rep", "requests": [{"ids": TRAIN_IDS_A}, {"ids": [1, 7]}]}
    with pytest.raises(Exception, match=r"request 1 \(ids\).*\[1\]"):
        run(tmp_path, scn)


def test_request_of_test_ids_is_refused(tmp_path):
    scn = {**BASE, "name": "bad", "requests": [{"ids": [2]}]}
    with pytest.raises(Exception, match=r"test split.*\[2\]"):
        run(tmp_path, scn)


def test_strategy_request_dispatch(tmp_path):
    pytest.importorskip(
        "obliviate.attacks.requests", reason="obliviate.attacks.requests not written yet"
    )
    scn = {**BASE, "name": "strat", "requests": [{"strategy": "random", "budget": 5}]}
    res = run(tmp_path, scn)
    store = ResultsStore(tmp_path / "res.db")
    (entry,) = store.ledger("strat")
    assert entry["request_size"] == 5 and entry["request_source"] == "strategy"
    res2 = run(tmp_path, scn)
    assert res2.cache["hits"]["request"] == 1 and res.rows_written == 3


def test_matched_forgetting_errors_name_method_and_line():
    got = problems(
        """\
        name: t
        dataset: {name: digits}
        requests: {ids: [1, 2]}
        methods:
          - {name: grad_ascent, config: {stop_forget_acc: 3.0}}
          - {name: fisher}
        matched_forgetting:
          margin_pp: 2
          methods: [grad_ascent, fisher, nope]
        """
    )
    by_key = {key: (ln, msg) for ln, key, msg in got}
    assert by_key["matched_forgetting.methods[1]"][0] == 9
    assert "no stopping rule" in by_key["matched_forgetting.methods[1]"][1]
    assert "'nope'" in by_key["matched_forgetting.methods[2]"][1]
    ln, msg = by_key["methods[0].config.stop_forget_acc"]
    assert ln == 5 and "matched_forgetting" in msg


def test_matched_forgetting_stops_each_method_at_gold_plus_margin(tmp_path):
    """The runner measures gold's forget accuracy on the request and gives every covered method
    stop_forget_acc = gold + margin (recorded in the row); fisher has no stopping rule and runs
    unchanged. A different margin recomputes the covered models only."""
    scn = {
        **BASE,
        "name": "matched",
        "requests": [{"ids": TRAIN_IDS_A + TRAIN_IDS_B}],
        "methods": [
            {"name": "grad_ascent", "config": {"lr": 0.01, "schedule": "constant", "epochs": 500,
                                               "max_steps": 200}},
            {"name": "fisher"},
        ],
        "matched_forgetting": {"margin_pp": 30.0},
    }  # fmt: skip
    run(tmp_path, scn)
    store = ResultsStore(tmp_path / "res.db")
    rows = {r["method"]: r for r in store.rows("matched") if r["step"] in ("unlearn", "gold")}
    gold_fa = 100.0 - rows["gold"]["metrics"]["ua"]
    ga = rows["grad_ascent"]["info"]
    assert ga["params"]["stop_forget_acc"] == pytest.approx(min(100.0, gold_fa + 30.0))
    assert ga["stats"]["stopped_early"] is True and ga["stats"]["steps"] < 200
    assert ga["stats"]["forget_acc_at_stop"] <= ga["params"]["stop_forget_acc"]
    assert "stop_forget_acc" not in rows["fisher"]["info"]["params"]
    res2 = run(tmp_path, {**scn, "matched_forgetting": {"margin_pp": 10.0}})
    assert res2.cache["misses"] == {"unlearned": 1}


# --------------------------------------------------------------------------- suites, CLI


@pytest.mark.parametrize("suite", ["demo", "healing", "rurk", "roka", "methods", "attacks"])
def test_suites_validate_in_both_sizes(suite):
    assert suite in list_suites()
    quick, full = load_suite(suite, "quick"), load_suite(suite, "full")
    assert len(quick) == len(full) >= 1
    for q, f in zip(quick, full, strict=True):
        assert q.name == f.name
    if suite == "healing":  # the general spare set is a random subset, not the whole reserve
        for f in full:
            h = f.defenses.healing
            assert "spares" in h.pools and 0 < h.options["spare_pool_size"] < f.split.reserve
            # 100 random spares hold ~10 of the request's class: the rest must not be an error
            assert h.options["fallback"] == "remaining_only"
    if suite in ("attacks", "healing", "rurk", "roka"):  # the papers' settings, for a GPU
        paper = load_suite(suite, "paper")
        assert [p.name for p in paper] == [f.name for f in full]
        assert all(
            (p.split.train or 10**6) > (f.split.train or 0)
            for p, f in zip(paper, full, strict=True)
        )


def test_cli_run_writes_rows_and_prints_summary(tmp_path):
    import typer
    from typer.testing import CliRunner

    from obliviate.cli_scenarios import register

    app = typer.Typer()
    register(app)
    scn = write(tmp_path, "cli.yaml", {**BASE, "name": "cli"})
    db = tmp_path / "cli.db"
    args = ["run", str(scn), "--results", str(db), "--cache", str(tmp_path / "c"), "--quiet"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "3 rows written" in " ".join(out.output.split())
    assert len(ResultsStore(db).rows("cli")) == 3
    bad = write(tmp_path, "bad.yaml", "name: x\ndataset: {name: digits}\nrequests: {idz: [1]}\n")
    out = CliRunner().invoke(app, ["run", str(bad), "--results", str(db)])
    assert out.exit_code == 2 and "bad.yaml:3" in out.output


def test_bench_help_lists_every_suite_from_the_registry():
    import typer
    from typer.testing import CliRunner

    from obliviate.cli_scenarios import register
    from obliviate.scenarios import list_suites

    app = typer.Typer()
    register(app)
    out = CliRunner().invoke(app, ["bench", "--help"], terminal_width=200)
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.replace("│", " ").split())  # rich wraps help inside a box
    assert "methods" in list_suites()
    assert f"Built-in suite: {', '.join(list_suites())}." in text
    assert "..." not in text


def test_the_readme_scenario_example_validates():
    import re
    from pathlib import Path

    from obliviate.scenarios import scenario_from_yaml

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", readme, re.S)
    assert block, "README lost its scenario example"
    scn = scenario_from_yaml(block.group(1), origin="README.md")
    assert len(scn.requests) == 2
    assert [m.name for m in scn.methods] == ["fisher", "rurk", "grad_ascent"]
    assert [m.key for m in scn.matched_methods()] == ["rurk", "grad_ascent"]


# ------------------------------------------------------------ independent requests, --set


def test_independent_requests_are_alternatives_unlearned_from_the_original(tmp_path):
    from obliviate._io import hash_parts
    from obliviate.scenarios.schema import canonical_json

    scn = {**BASE, "name": "alt", "requests": [{"ids": TRAIN_IDS_A}, {"ids": TRAIN_IDS_A}]}
    with pytest.raises(Exception, match="earlier request"):  # a sequence refuses a repeated id
        run(tmp_path, scn)
    run(tmp_path, {**scn, "independent_requests": True})
    rows = ResultsStore(tmp_path / "res.db").rows("alt")
    by = {(r["step_index"], r["step"]): r for r in rows}
    for step in ("gold", "unlearn"):  # same request from the same start: the same model
        assert by[(0, step)]["metrics"]["acc/test"] == by[(1, step)]["metrics"]["acc/test"]
    assert by[(1, "unlearn")]["info"]["cumulative_size"] == len(TRAIN_IDS_A)
    ledger = ResultsStore(tmp_path / "res.db").ledger("alt")
    assert [e["parent_version"] for e in ledger] == ["v0", "v0"]
    # the new key is left out of the hash at its default: other scenarios keep their hashes
    plain = scenario_from_yaml(yaml.safe_dump({**BASE, "name": "alt"}))
    dump = plain.model_dump(mode="json")
    del dump["independent_requests"]
    assert plain.config_hash() == hash_parts(canonical_json(dump))
    got = problems(
        "name: t\ndataset: {name: digits}\nrequests: {ids: [1]}\nindependent_requests: true\n"
        "attack_model: gold\n"
    )
    assert got[0][1] == "attack_model" and "original model only" in got[0][2]


def test_set_overlays_dotted_keys_and_refuses_bad_ones():
    from obliviate.errors import ConfigError
    from obliviate.scenarios.overrides import apply_sets, parse_value

    scn = scenario_from_yaml(yaml.safe_dump(BASE))
    got = apply_sets(
        scn, ["training.lr=3e-4", "methods.finetune.config.max_steps=4", "seeds=[0, 1]"]
    )
    assert got.training["lr"] == 3e-4 and got.method("finetune").config["max_steps"] == 4
    assert got.seeds == [0, 1] and got.config_hash() != scn.config_hash()
    assert scn.training["lr"] == 0.05  # the input is not modified
    assert parse_value("[twins, none]") == ["twins", "none"] and parse_value("x1e3") == "x1e3"
    with pytest.raises(ConfigError, match="options go under defenses"):
        apply_sets(apply_sets(scn, ["defenses.healing={}"]), ["defenses.healing.lr=3e-4"])
    with pytest.raises(ConfigError, match="no item labelled or named 'nope'"):
        apply_sets(scn, ["methods.nope.config.lr=1"])
    with pytest.raises(ScenarioError, match="training.lr"):
        apply_sets(scn, ["training.lr=fast"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_sets(scn, ["training.lr"])


def test_cli_run_set_overlay(tmp_path):
    import typer
    from typer.testing import CliRunner

    from obliviate.cli_scenarios import register

    app = typer.Typer()
    register(app)
    scn = write(tmp_path, "cli.yaml", {**BASE, "name": "cli"})
    db = tmp_path / "cli.db"
    args = ["run", str(scn), "--results", str(db), "--cache", str(tmp_path / "c"), "--quiet"]
    out = CliRunner().invoke(app, [*args, "--set", "methods.0.config.max_steps=2"])
    assert out.exit_code == 0, out.output
    row = next(r for r in ResultsStore(db).rows("cli") if r["step"] == "unlearn")
    assert row["info"]["params"]["max_steps"] == 2
    out = CliRunner().invoke(app, [*args, "--set", "training.epocs=2"])
    assert out.exit_code == 2 and "training.epocs" in out.output
