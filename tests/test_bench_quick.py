"""The benchmark scripts' quick sizes run end to end in CI (issues 4, 5 and 6: "a ``--quick``
size runs in CI"), on a subset of methods so that the whole file stays near two minutes.

Each run writes its numbers with ``--out`` and the tests check properties that a broken script
would violate: every requested row is there, exact methods reproduce gold, drops are finite.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_attacks_quick(tmp_path):
    stdout, res = _run(
        "attacks.py",
        "--quick",
        "--datasets",
        "fashion_mnist",
        "--strategies",
        "random,class",
        "--methods",
        "grad_ascent",
        "--cache",
        str(tmp_path / "cache"),
        tmp_path=tmp_path,
    )
    drops = res["fashion_mnist"]["drops"]["grad_ascent"]
    assert set(drops) == {"random", "class"}
    assert all(math.isfinite(v) for vs in drops.values() for v in vs)
    ind = res["indirect"]["drops"]["Shirt"]["grad_ascent"]
    assert set(ind) == {"nearest", "farthest", "random"}
    assert "target on fashion_mnist" in stdout


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
