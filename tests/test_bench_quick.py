"""The benchmark comparisons' quick sizes run end to end in CI (issues 4, 5 and 6: "a ``--quick``
size runs in CI"): the scripts left in ``bench/`` and the suites that replaced the others, with
their table printers (``obliviate.scenarios.tables``).

The tests check properties that a broken comparison would violate: every requested row is there,
exact methods reproduce gold, drops are finite.
"""

from __future__ import annotations

import importlib
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from obliviate.scenarios import ResultsStore, Scenario, load_suite, run_scenario

pytestmark = pytest.mark.integration
BENCH = Path(__file__).resolve().parents[1] / "bench"


def _run(script: str, *args: str, tmp_path: Path) -> tuple[str, dict]:
    out = tmp_path / "out.json"
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), *args, "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def test_methods_suite_quick_with_tuning(tmp_path):
    """`obliviate bench methods --size quick` (bench/methods.py's comparison as a suite): every
    method is tuned on seed 0, no row comes from seed 0, the rows record the chosen params and
    the suite's table names every method of every setting."""
    from typer.testing import CliRunner

    from obliviate.cli import app
    from obliviate.scenarios import ResultsStore, load_suite

    db = tmp_path / "bench.db"
    args = ["bench", "methods", "--size", "quick", "--results", str(db), "--quiet"]
    out = CliRunner().invoke(app, [*args, "--cache", str(tmp_path / "cache")])
    assert out.exit_code == 0, out.output
    scenarios = load_suite("methods", "quick")
    rows = ResultsStore(db).rows()
    assert rows and all(r["seed"] != 0 for r in rows)  # the tuning seed is never reported
    for scn in scenarios:
        assert scn.tune is not None and scn.tune.seed == 0
        unlearn = [r for r in rows if r["scenario"] == scn.name and r["step"] == "unlearn"]
        assert {r["method"] for r in unlearn} == {m.key for m in scn.methods}
        for r in unlearn:
            tuned = r["info"]["tuned"]
            assert tuned["seed"] == 0 and tuned["trials"] == 2 and tuned["params"]
            assert all(r["info"]["params"][k] == v for k, v in tuned["params"].items())
        table = out.output[out.output.index(f"{scn.name}: mean ± std") :]
        for name in ("original", "gold", *(m.key for m in scn.methods)):
            assert name in table, (scn.name, name)


def test_device_check_on_cpu(tmp_path):
    stdout, res = _run(
        "device_check.py",
        "--device",
        "cpu",
        "--methods",
        "grad_ascent,sisa",
        "--n-train",
        "600",
        "--passing",
        str(tmp_path / "passing.txt"),
        tmp_path=tmp_path,
    )
    names = [c["name"] for c in res["checks"]]
    assert names == [
        "unlearn/grad_ascent",
        "unlearn/sisa",
        "heal/twins-feature_cosine",
        "residual_curve",
        "select_request/lowest_logit",
        "mia_efficacy",
    ]
    assert all(c["ok"] for c in res["checks"]), [c["detail"] for c in res["checks"]]
    assert res["device"] == "cpu"
    assert (tmp_path / "passing.txt").read_text() == "grad_ascent,sisa"
    assert "device check on cpu" in stdout


# --------------------------------------------------------------------- suites and their printers


def _printed(module: str, rows: list[dict]) -> str:
    printer = importlib.import_module(f"obliviate.scenarios.tables.{module}")
    console = Console(file=io.StringIO(), width=250, color_system=None)
    printer.print_table(rows, console)
    return console.file.getvalue()


def _check_every_row(scn, rows: list[dict]) -> None:
    """Every requested row is stored: original, gold and each method at every request."""
    for i in range(len(scn.requests)):
        got = {(r["step"], r["method"]) for r in rows if r["step_index"] == i}
        want = {("original", "original"), ("gold", "gold")}
        assert want | {("unlearn", m.key) for m in scn.methods} <= got, (scn.name, i)


def test_attacks_suite_quick(tmp_path):
    """The attacks suite (bench/attacks.py's comparisons): every strategy and method has a row
    per request, the requests are alternatives (each drawn from the whole split and unlearned
    from the original), the drops are finite, and the printer gives both tables and the verdict."""
    store = ResultsStore(tmp_path / "attacks.db")
    for scn in load_suite("attacks", "quick"):
        run_scenario(scn, results=store, cache=tmp_path / "cache", show_progress=False)
        rows = store.rows(scn.name)
        _check_every_row(scn, rows)
        assert {e["parent_version"] for e in store.ledger(scn.name)} == {"v0"}
        sizes = {r["info"]["cumulative_size"] == r["info"]["request_size"] for r in rows}
        assert sizes == {True}, scn.name  # alternatives: nothing accumulates
    rows = store.rows()
    labels = {r["info"]["request"].get("strategy") for r in rows if "requests" in r["scenario"]}
    assert labels == {"random", "lowest_logit"}
    ind = [r for r in rows if "indirect" in r["scenario"] and r["step"] == "unlearn"]
    assert {r["info"]["request"]["name"] for r in ind} == {"nearest", "farthest", "random"}
    assert {r["info"]["request"]["victim_class_name"] for r in ind} == {"Shirt"}
    for r in rows:
        acc = r["metrics"]["acc/test"]
        assert isinstance(acc, float) and math.isfinite(acc), (r["scenario"], r["method"])
    out = _printed("attacks", rows)
    assert "target on attacks-requests-mnist" in out and "target on attacks-requests-fashion" in out
    assert "retrain (gold)" in out and "victim-class test-accuracy drop" in out
    assert "nan" not in out.lower()


TINY = {
    "dataset": {"name": "digits"},
    "split": {"seed": 0, "test": 0.25, "reserve": 100, "val": 50},
    "training": {"epochs": 2, "lr": 0.05, "batch_size": 64},
    "seeds": [0, 1],
}


def _tiny_rows(tmp_path, name: str, **fields) -> tuple[object, list[dict]]:
    scn = Scenario.from_dict({**TINY, "name": name, **fields})
    store = ResultsStore(tmp_path / "tiny.db")
    run_scenario(scn, results=store, cache=tmp_path / "cache", show_progress=False)
    rows = store.rows(name)
    _check_every_row(scn, rows)
    return scn, rows


def test_healing_and_rurk_printers_on_a_tiny_run(tmp_path):
    """The healing and rurk tables over real rows; an exact method (retrain) reproduces gold."""
    _, rows = _tiny_rows(
        tmp_path,
        "tiny-heal",
        requests=[{"strategy": "random", "budget": 20, "classes": [3]}],
        methods=[{"name": "retrain"}, {"name": "finetune", "config": {"max_steps": 5}}],
        defenses={"healing": {"pools": ["twins", "none"], "methods": ["finetune"],
                              "options": {"fallback": "remaining_only"}}},  # fmt: skip
        audit={"metrics": ["accuracy", "mia_efficacy", "avg_gap", "residual_knowledge"],
               "taus": [0.0, 0.1], "c": 5},
    )  # fmt: skip
    gold = {r["seed"]: r["metrics"] for r in rows if r["step"] == "gold"}
    for r in rows:
        if r["method"] == "retrain":
            assert r["metrics"]["acc/test"] == gold[r["seed"]]["acc/test"]
            assert r["metrics"]["avg_gap"] == 0.0
    out = _printed("healing", rows)
    assert "finetune" in out and "twins/feature_cosine/e1" in out and "none/e1" in out
    assert "healing target" in out and "configurations" in out
    out = _printed("rurk", rows)
    assert "r@0.1" in out and "tiny-heal / finetune" in out and "tiny-heal / retrain" in out


def test_roka_printer_on_a_tiny_run(tmp_path):
    """The roka table over an indirect-attack run at matched forgetting."""
    _, rows = _tiny_rows(
        tmp_path,
        "tiny-roka",
        requests=[{"indirect": {"victim_class": 3}}],
        methods=[
            {
                "name": "grad_ascent",
                "config": {"lr": 0.01, "schedule": "constant", "epochs": 1000, "max_steps": 50},
            },
            {"name": "roka", "config": {"iterations": 20}},
        ],  # fmt: skip
        matched_forgetting={"margin_pp": 2.0},
    )
    out = _printed("roka", rows)
    assert "grad_ascent" in out and "roka" in out and "victim loss vs gold" in out
    for r in rows:
        if r["step"] == "unlearn":
            assert r["info"]["params"]["stop_forget_acc"] >= 0
