"""Results store: exact row/ledger format, idempotent upserts, WAL, summaries (mean ± std, median
timings), and kill-and-resume: a scenario run SIGKILLed mid-way in a subprocess and restarted
finishes with neither duplicated nor missing rows (and the same numbers as an uninterrupted run).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from obliviate.errors import ConfigError
from obliviate.scenarios import ResultsStore, run_scenario, summarize

KEY = ("scenario", "step", "step_index", "method", "variant", "seed")


def _row(seed: int, acc: float, seconds: float, **kw) -> dict:
    r = {
        "scenario": "s",
        "step": "unlearn",
        "step_index": 0,
        "method": "finetune",
        "variant": "",
        "seed": seed,
        "config_hash": "h",
        "metrics": {"acc/test": acc, "ua": "skipped: no forget set", "per_class/test": {"a": 1.0}},
        "timings": {"seconds": seconds, "speedup": 10.0 / seconds},
        "info": {"request_size": 3},
        "versions": {"obliviate": "0"},
        "created": 1.0,
    }
    r.update(kw)
    return r


def test_upsert_is_idempotent_and_rows_round_trip(tmp_path):
    store = ResultsStore(tmp_path / "r.db")
    store.put_row(_row(0, 90.0, 1.0))
    store.put_row(_row(0, 90.0, 1.0))
    assert len(store.rows()) == 1
    store.put_row(_row(0, 91.0, 1.0, config_hash="h2"))
    (r,) = store.rows("s")
    assert r == _row(0, 91.0, 1.0, config_hash="h2")
    key = {k: r[k] for k in KEY}
    assert store.has_row(key, "h2") and not store.has_row(key, "h")
    assert store.rows("other") == []
    mode = sqlite3.connect(tmp_path / "r.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_bad_rows_are_refused(tmp_path):
    store = ResultsStore(tmp_path / "r.db")
    with pytest.raises(ConfigError, match="step 'bogus'"):
        store.put_row(_row(0, 1.0, 1.0, step="bogus"))
    with pytest.raises(ConfigError, match="finite"):
        store.put_row(_row(0, float("nan"), 1.0))
    bad = _row(0, 1.0, 1.0)
    del bad["metrics"]
    with pytest.raises(ConfigError, match="metrics"):
        store.put_row(bad)
    assert store.rows() == []


def test_ledger_round_trip(tmp_path):
    store = ResultsStore(tmp_path / "r.db")
    e = {
        "scenario": "s", "seed": 0, "step_index": 1, "request_hash": "abc", "request_size": 3,
        "request_source": "ids", "method": "finetune", "model_version": "v2",
        "parent_version": "v1", "metrics_summary": {"acc/test": 90.0},
    }  # fmt: skip
    store.put_ledger(e)
    store.put_ledger(e)
    assert store.ledger() == [e] and store.ledger("s") == [e] and store.ledger("x") == []


def test_summary_is_mean_std_over_seeds_and_median_time(tmp_path):
    store = ResultsStore(tmp_path / "r.db")
    for seed, acc, sec in ((0, 90.0, 1.0), (1, 92.0, 5.0), (2, 94.0, 2.0)):
        store.put_row(_row(seed, acc, sec))
    (s,) = summarize(store.rows("s"), ["acc/test", "ua"])
    assert s["metrics"]["acc/test"] == {"mean": 92.0, "std": 2.0, "n": 3}
    assert s["metrics"]["ua"] == {"skipped": "skipped: no forget set"}
    assert s["seconds_median"] == 2.0 and s["speedup_median"] == 5.0
    assert s["seeds"] == [0, 1, 2]
    table = store.summary("s", ["acc/test"])
    assert table.row_count == 1


# --------------------------------------------------------------------------- kill and resume

SCENARIO = {
    "name": "killme",
    "dataset": {"name": "digits"},
    "split": {"seed": 0, "test": 0.25, "reserve": 100, "val": 50},
    "training": {"epochs": 1, "lr": 0.05, "batch_size": 64},
    "requests": [{"ids": [0, 1, 3, 4, 5, 6]}, {"ids": [7, 8, 9]}],
    "methods": [
        {"name": "finetune", "config": {"epochs": 1}},
        {"name": "grad_ascent", "config": {"epochs": 1, "lr": 0.001}},
    ],
    "audit": {"metrics": ["accuracy", "mia_efficacy", "avg_gap", "cost"]},
    "seeds": [0],
}

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from obliviate.scenarios import run_scenario

    scn, db, cache, event, n = sys.argv[1:6]
    seen = {"n": 0}

    def on_event(kind, info):
        if kind == event:
            seen["n"] += 1
            if seen["n"] == int(n):
                os.kill(os.getpid(), signal.SIGKILL)

    run_scenario(scn, results=db, cache=cache, show_progress=False, on_event=on_event)
    print("finished without being killed")
    """
)


def _comparable(rows: list[dict]) -> list[tuple]:
    return [
        (tuple(r[k] for k in KEY), r["config_hash"], r["metrics"]["acc/test"], r["metrics"]["ua"])
        for r in rows
    ]


@pytest.mark.timeout(180)
def test_sigkilled_run_resumes_without_lost_or_duplicated_rows(tmp_path):
    scn = tmp_path / "killme.yaml"
    scn.write_text(yaml.safe_dump(SCENARIO))
    ref = run_scenario(
        scn, results=tmp_path / "ref.db", cache=tmp_path / "ref", show_progress=False
    )
    expected = ResultsStore(tmp_path / "ref.db").rows("killme")
    assert len(expected) == ref.rows_written == 8  # 2 requests × (original, gold, 2 methods)
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    db, cache = tmp_path / "k.db", tmp_path / "k"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # killed after the 3rd row, then (resumed) right after a new model artifact was cached
    for event, n in (("row", 3), ("artifact", 2)):
        p = subprocess.run(
            [sys.executable, str(child), str(scn), str(db), str(cache), event, str(n)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert p.returncode == -signal.SIGKILL, p.stdout + p.stderr
        partial = ResultsStore(db).rows("killme")
        assert 0 < len(partial) < len(expected)
    res = run_scenario(scn, results=db, cache=cache, show_progress=False)
    assert res.rows_skipped > 0 and res.cache["hits"]  # resumed, not restarted
    rows = ResultsStore(db).rows("killme")
    assert _comparable(rows) == _comparable(expected)
    assert len({tuple(r[k] for k in KEY) for r in rows}) == len(rows)
    assert len(ResultsStore(db).ledger("killme")) == 4
    assert ResultsStore(db).ledger("killme") == ResultsStore(tmp_path / "ref.db").ledger("killme")
    assert not any(Path(cache).rglob("*.tmp"))  # no half-written artifact was left behind


# --------------------------------------------------------------------------- aggregation (issue 15)


def test_summary_and_report_aggregate_and_print_alike_on_one_and_three_seeds(tmp_path):
    import io

    from rich.console import Console

    from obliviate.report import aggregate, build_report
    from obliviate.scenarios.store import summary_table

    for seeds in ((0,), (0, 1, 2)):
        rows = [_row(s, 90.0 + 1.7 * s * s, 1.0 + s) for s in seeds]
        (s,) = summarize(rows, ["acc/test"])
        st = aggregate([r["metrics"]["acc/test"] for r in rows])
        assert s["metrics"]["acc/test"] == {"mean": st.mean, "std": st.std, "n": len(seeds)}
        assert (st.std is None) == (len(seeds) == 1)  # a sample std needs two seeds
        text = f"{st.mean:.2f}" + ("" if st.std is None else f" ± {st.std:.2f}")
        console = Console(file=io.StringIO(), width=200)
        console.print(summary_table([s], ["acc/test"]))
        assert f" {text} " in console.file.getvalue()
        md = build_report(rows, [], tmp_path / str(len(seeds)), generated="").markdown
        line = next(ln for ln in md.read_text().splitlines() if ln.startswith("| finetune |"))
        assert line.startswith(f"| finetune | {len(seeds)} |") and f"| {text} |" in line


# --------------------------------------------------------------------------- schema version


def _state(p: Path) -> tuple[bytes, int]:
    return p.read_bytes(), p.stat().st_mtime_ns


def _sqlite(p: Path, *sql: str) -> None:
    conn = sqlite3.connect(p)
    for s in sql:
        conn.execute(s)
    conn.commit()
    conn.close()


NOT_STORES = {
    "empty.db": (lambda p: p.write_bytes(b""), "is an empty file"),
    "text.db": (lambda p: p.write_text("id,acc\n1,90\n"), "is not an SQLite database"),
    "other.db": (
        lambda p: _sqlite(p, "CREATE TABLE notes (id INTEGER, body TEXT)"),
        "is an SQLite database with tables notes, not an obliviate results store",
    ),
    "columns.db": (
        lambda p: _sqlite(
            p,
            "CREATE TABLE rows (scenario TEXT, value REAL)",
            "CREATE TABLE ledger (scenario TEXT)",
            "CREATE TABLE scenarios (name TEXT)",
        ),
        "is an SQLite database whose table 'rows' has columns \\(scenario, value\\)",
    ),
    "app.db": (
        lambda p: _sqlite(p, "PRAGMA application_id = 1234", "CREATE TABLE t (x)"),
        "is the SQLite database of another application",
    ),
}


@pytest.mark.parametrize("name", sorted(NOT_STORES))
def test_a_file_that_is_not_a_store_is_refused_untouched(tmp_path, name):
    make, what = NOT_STORES[name]
    p = tmp_path / name
    make(p)
    before = _state(p)
    for read_only in (False, True):
        with pytest.raises(ConfigError, match=rf"results store '.*{name}' {what}") as err:
            ResultsStore(p, read_only=read_only)
        assert "\n" not in str(err.value)
        assert _state(p) == before
    assert sorted(x.name for x in tmp_path.iterdir()) == [name]


def test_a_store_of_a_newer_schema_is_refused(tmp_path):
    from obliviate.scenarios.store import SCHEMA_VERSION

    p = tmp_path / "new.db"
    ResultsStore(p).close()
    _sqlite(p, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = _state(p)
    for read_only in (False, True):
        with pytest.raises(ConfigError, match="newer obliviate .*upgrade obliviate"):
            ResultsStore(p, read_only=read_only)
    assert _state(p) == before


def test_a_store_without_a_version_is_read_as_is_and_migrated_when_written(tmp_path):
    from obliviate.scenarios.store import _SCHEMA, APPLICATION_ID, SCHEMA_VERSION

    p = tmp_path / "old.db"
    conn = sqlite3.connect(p)  # what the code before schema versions wrote
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(_SCHEMA)
    conn.execute(
        "INSERT INTO rows VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        ("s", "unlearn", 0, "finetune", "", 0, "h", '{"acc/test": 90.0}',
         '{"seconds": 1.0, "speedup": null}', "{}", "{}", 1.0),
    )  # fmt: skip
    conn.commit()
    conn.close()
    before = _state(p)
    with ResultsStore(p, read_only=True) as store:
        assert [r["metrics"] for r in store.rows()] == [{"acc/test": 90.0}]
    assert _state(p) == before
    version = "PRAGMA application_id", "PRAGMA user_version"
    assert [sqlite3.connect(p).execute(v).fetchone()[0] for v in version] == [0, 0]
    with ResultsStore(p) as store:
        store.put_row(_row(1, 92.0, 1.0))
        assert len(store.rows("s")) == 2
    ids = [sqlite3.connect(p).execute(v).fetchone()[0] for v in version]
    assert ids == [APPLICATION_ID, SCHEMA_VERSION]
    with ResultsStore(p) as store:  # reopening a current store changes nothing
        assert len(store.rows()) == 2


def test_a_new_store_carries_its_version_and_read_only_needs_a_file(tmp_path):
    from obliviate.scenarios.store import APPLICATION_ID, SCHEMA_VERSION

    with pytest.raises(ConfigError, match="does not exist"):
        ResultsStore(tmp_path / "none.db", read_only=True)
    assert not (tmp_path / "none.db").exists()
    ResultsStore(tmp_path / "r.db").close()
    conn = sqlite3.connect(tmp_path / "r.db")
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_concurrent_openers_of_a_new_store_never_see_an_empty_file(tmp_path):
    import threading

    p = tmp_path / "sub" / "race.db"
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            ResultsStore(p).close()
        except BaseException as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=open_it) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(x.name for x in p.parent.iterdir()) == ["race.db"]  # no temporary left
