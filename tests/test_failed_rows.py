"""A method that diverges inside a run: a failed row naming the method and the request, the run
goes on, every reader copes (issue 20).

Tiny real data (digits, small_cnn, one epoch). grad_ascent with lr 10, no gradient clipping and a
constant schedule really diverges (non-finite loss at its 4th step); finetune is the normal
method beside it.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from obliviate.cli import app
from obliviate.errors import DivergenceError, ObliviateError
from obliviate.report import build_report
from obliviate.scenarios import ResultsStore, load_scenario, summarize, summary_table
from obliviate.scenarios.printers import PRINTERS, print_suite
from obliviate.steps import first_nonfinite, unlearn_step
from obliviate.unlearn import Unlearner
from test_scenarios import BASE, TRAIN_IDS_A, TRAIN_IDS_B, run

DIVERGE = {
    "name": "grad_ascent",
    "config": {"lr": 10.0, "grad_clip": 0.0, "epochs": 20, "schedule": "constant"},
}
SCN = {
    **BASE,
    "name": "fail",
    "requests": [{"ids": TRAIN_IDS_A}, {"ids": TRAIN_IDS_B, "name": "second"}],
    "methods": [{"name": "finetune", "config": {"epochs": 1}}, DIVERGE],
}


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fail")
    res = run(tmp, SCN)
    return tmp, res


def _by(rows):
    return {(r["step_index"], r["step"], r["method"]): r for r in rows}


def test_the_run_completes_with_failed_rows_for_the_diverging_method(failed_run):
    tmp, res = failed_run
    store = ResultsStore(tmp / "res.db", read_only=True)
    rows = _by(store.rows("fail"))
    assert set(rows) == {
        (i, s, m)
        for i in (0, 1)
        for s, m in (
            ("original", "original"),
            ("gold", "gold"),
            ("unlearn", "finetune"),
            ("unlearn", "grad_ascent"),
        )  # fmt: skip
    }
    for i in (0, 1):  # the normal method's rows are whole
        assert isinstance(rows[i, "unlearn", "finetune"]["metrics"]["acc/test"], float)
    first = rows[0, "unlearn", "grad_ascent"]
    assert set(first["metrics"]) == {"failed"}
    reason = first["metrics"]["failed"]
    assert reason.startswith("method 'grad_ascent' diverged at request 0: ")
    assert "diverged at step" in reason  # the optimisation step the loss went non-finite
    assert first["info"]["error"]["type"] == "DivergenceError"
    assert first["timings"]["speedup"] is None
    second = rows[1, "unlearn", "grad_ascent"]
    assert second["metrics"] == {"failed": "skipped: method 'grad_ascent' diverged at request 0"}
    assert second["info"]["failed_at_request"] == 0
    # the ledger has the normal method's versions only: no model version for a failed one
    assert [(e["step_index"], e["method"]) for e in store.ledger("fail")] == [
        (0, "finetune"),
        (1, "finetune"),
    ]
    assert res.rows_failed == 2 and res.rows_written == 8


def test_a_rerun_keeps_the_failed_rows_without_retrying_or_duplicating(failed_run):
    tmp, _ = failed_run
    before = ResultsStore(tmp / "res.db").rows("fail")
    res = run(tmp, SCN)
    after = ResultsStore(tmp / "res.db").rows("fail")
    assert res.rows_written == 0 and res.rows_skipped == 8 and res.rows_failed == 0
    assert "unlearned" not in res.cache["misses"]  # the diverging method was not run again
    assert [(r["step_index"], r["step"], r["method"], r["config_hash"]) for r in after] == [
        (r["step_index"], r["step"], r["method"], r["config_hash"]) for r in before
    ]


def test_summaries_printers_and_report_cope(failed_run, tmp_path):
    tmp, _ = failed_run
    store = ResultsStore(tmp / "res.db", read_only=True)
    rows = store.rows("fail")
    summ = {(s["step_index"], s["method"]): s for s in summarize(rows)}
    ga = summ[0, "grad_ascent"]
    assert ga["n_failed"] == 1 and "diverged at request 0" in ga["failed"][0]
    assert ga["metrics"]["acc/test"]["skipped"].startswith("skipped: failed: method 'grad_ascent'")
    assert ga["seconds_median"] is None  # a failed run's time is not a cost
    assert summ[0, "finetune"]["n_failed"] == 0
    out = io.StringIO()
    Console(file=out, width=200).print(summary_table(summarize(rows)))
    assert (
        "grad_ascent (failed 1/1)" in out.getvalue() and "diverged at request 0" in out.getvalue()
    )
    scn = load_scenario(tmp / "fail.yaml")
    for suite in PRINTERS.names():
        out = io.StringIO()
        assert print_suite(suite, store, [scn], Console(file=out, width=200))
        assert "Failed" in out.getvalue() and "grad_ascent" in out.getvalue(), suite
    paths = build_report(rows, store.ledger("fail"), tmp_path / "report", generated="")
    md = paths.markdown.read_text()
    assert "### Failed" in md and "skipped: method 'grad_ascent' diverged at request 0" in md
    assert "2 failed row(s)" in md
    metrics_tables = md.split("### Failed")[0]
    assert "| grad_ascent |" not in metrics_tables  # never in a table of numbers


def test_report_of_failed_rows_only_and_a_bad_reason(tmp_path):
    row = {"scenario": "s", "step": "unlearn", "step_index": 0, "method": "m", "variant": "",
           "seed": 0, "metrics": {"failed": "method 'm' diverged at request 0"}}  # fmt: skip
    md = build_report([row], [], tmp_path / "r", generated="").markdown.read_text()
    assert "## Scenario: s" in md and "method 'm' diverged at request 0" in md
    with pytest.raises(ObliviateError, match="failed row's reason"):
        build_report([{**row, "metrics": {"failed": 1}}], [], tmp_path / "r2")


# ---------------------------------------------------------------------------- the step and CLI


@dataclass
class _NoConfig:
    pass


class _NanUnlearner(Unlearner):
    """Test-only: returns the model with one NaN weight (its loss never looked bad)."""

    name = "nan_weights"
    Config = _NoConfig

    def _unlearn(self, model, task):
        with torch.no_grad():
            next(iter(model.parameters())).view(-1)[0] = float("nan")
        return {}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ck")
    runner = CliRunner()
    ck = tmp / "orig"
    r = runner.invoke(
        app,
        ["train", "--dataset", "digits", "--out", str(ck), "--epochs", "1", "--quiet"],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    split = json.loads((ck / "split.json").read_text())
    req = tmp / "req.json"
    req.write_text(json.dumps({"ids": split["train"][:6]}))
    return ck, req


def test_step_refuses_non_finite_weights_naming_method_and_tensor(checkpoint, tmp_path):
    ck, req = checkpoint
    with pytest.raises(DivergenceError, match=r"'nan_weights' produced non-finite weights") as e:
        unlearn_step(_NanUnlearner(), ck, req, out=tmp_path / "out")
    assert "parameter '" in str(e.value) and "request " in str(e.value)
    assert e.value.method == "nan_weights" and e.value.tensor.startswith("parameter ")
    assert isinstance(e.value, FloatingPointError)  # tuning's "diverged trial" still catches it
    assert not (tmp_path / "out").exists()  # nothing saved
    m = torch.nn.Linear(2, 2)
    assert first_nonfinite(m) is None
    m.register_buffer("b", torch.tensor([float("inf")]))
    assert first_nonfinite(m) == "buffer 'b'"


def test_cli_unlearn_that_diverges_exits_2_with_one_line(checkpoint, tmp_path):
    ck, req = checkpoint
    out = tmp_path / "unl"
    sets = [f"{k}={v}" for k, v in DIVERGE["config"].items()]
    r = CliRunner().invoke(
        app,
        [
            "unlearn",
            "--method",
            "grad_ascent",
            "--model",
            str(ck),
            "--request",
            str(req),
            "--out",
            str(out),
            *sum((["--set", s] for s in sets), []),
        ],  # fmt: skip
    )
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.output
    assert "error: method 'grad_ascent' diverged at step" in lines[0] and "request" in lines[0]
    assert not out.exists()
