"""The results store: one SQLite file (stdlib ``sqlite3``) of result rows and the request ledger.

Durability contract (DESIGN.md "Results"): the database runs in WAL mode with
``synchronous=FULL``; every row is written in its own transaction; a row's identity is its
unique key ``(scenario, step, step_index, method, variant, seed)`` and writing it again replaces
it (an idempotent upsert). A run killed at any point (even SIGKILL) therefore leaves only whole
rows, and a restarted run, which skips rows already present with the same ``config_hash``,
finishes with neither duplicated nor missing rows.

Row format (the report codes against it — keep it)::

    {"scenario", "step": "original"|"gold"|"unlearn"|"heal", "step_index", "method", "variant",
     "seed", "config_hash", "metrics": {...}, "timings": {"seconds", "speedup"}, "info": {...},
     "versions": {...}, "created"}

Ledger entry format::

    {"scenario", "seed", "step_index", "request_hash", "request_size", "request_source",
     "method", "model_version", "parent_version", "metrics_summary": {...}}
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from obliviate.audit import SUMMARY_KEYS
from obliviate.errors import ConfigError

STEPS = ("original", "gold", "unlearn", "heal")
ROW_KEY = ("scenario", "step", "step_index", "method", "variant", "seed")
LEDGER_KEY = ("scenario", "seed", "step_index", "method")
#: Quality metrics summarised by :func:`summarize` (mean ± std over seeds) by default.
QUALITY_KEYS = SUMMARY_KEYS
_SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (
  scenario TEXT NOT NULL, step TEXT NOT NULL, step_index INTEGER NOT NULL,
  method TEXT NOT NULL, variant TEXT NOT NULL, seed INTEGER NOT NULL,
  config_hash TEXT NOT NULL, metrics TEXT NOT NULL, timings TEXT NOT NULL,
  info TEXT NOT NULL, versions TEXT NOT NULL, created REAL NOT NULL,
  PRIMARY KEY (scenario, step, step_index, method, variant, seed)
);
CREATE TABLE IF NOT EXISTS ledger (
  scenario TEXT NOT NULL, seed INTEGER NOT NULL, step_index INTEGER NOT NULL,
  method TEXT NOT NULL, request_hash TEXT NOT NULL, request_size INTEGER NOT NULL,
  request_source TEXT NOT NULL, model_version TEXT NOT NULL, parent_version TEXT NOT NULL,
  metrics_summary TEXT NOT NULL, created REAL NOT NULL,
  PRIMARY KEY (scenario, seed, step_index, method)
);
CREATE TABLE IF NOT EXISTS scenarios (
  name TEXT PRIMARY KEY, config_hash TEXT NOT NULL, config TEXT NOT NULL, created REAL NOT NULL
);
"""


def _dumps(o: Any) -> str:
    """JSON with non-finite floats refused (a NaN must be a ``skipped: …`` string instead)."""
    try:
        return json.dumps(o, sort_keys=True, allow_nan=False)
    except ValueError as e:
        raise ConfigError(f"result values must be finite numbers or strings: {e}") from None


class ResultsStore:
    """SQLite-backed rows + ledger. Safe to reopen while another process appends (WAL)."""

    def __init__(self, path: str | os.PathLike[str] = "obliviate-results.db") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise ConfigError(f"results store {self.path} cannot be opened: {e}") from None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writing
    def _write(self, sql: str, params: Sequence[Any]) -> None:
        with self._conn:  # its own transaction: committed on exit, rolled back on error
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute(sql, params)

    def put_row(self, row: Mapping[str, Any]) -> None:
        """Insert or replace one row (its unique key decides which), in its own transaction."""
        missing = [k for k in (*ROW_KEY, "config_hash", "metrics", "timings") if k not in row]
        if missing:
            raise ConfigError(f"result row lacks {missing}")
        if row["step"] not in STEPS:
            raise ConfigError(f"result row step {row['step']!r} is not one of {STEPS}")
        self._write(
            "INSERT OR REPLACE INTO rows VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                str(row["scenario"]),
                str(row["step"]),
                int(row["step_index"]),
                str(row["method"]),
                str(row["variant"]),
                int(row["seed"]),
                str(row["config_hash"]),
                _dumps(row["metrics"]),
                _dumps(row["timings"]),
                _dumps(row.get("info", {})),
                _dumps(row.get("versions", {})),
                float(row.get("created", time.time())),
            ),
        )

    def put_ledger(self, entry: Mapping[str, Any]) -> None:
        """Insert or replace one ledger entry (key: scenario, seed, step_index, method)."""
        self._write(
            "INSERT OR REPLACE INTO ledger VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                str(entry["scenario"]),
                int(entry["seed"]),
                int(entry["step_index"]),
                str(entry["method"]),
                str(entry["request_hash"]),
                int(entry["request_size"]),
                str(entry["request_source"]),
                str(entry["model_version"]),
                str(entry["parent_version"]),
                _dumps(entry.get("metrics_summary", {})),
                float(entry.get("created", time.time())),
            ),
        )

    def put_scenario(self, name: str, config_hash: str, config: Mapping[str, Any]) -> None:
        """Record the scenario's validated config (what the rows' ``config_hash`` refers to)."""
        self._write(
            "INSERT OR REPLACE INTO scenarios VALUES (?,?,?,?)",
            (name, config_hash, _dumps(config), time.time()),
        )

    # ------------------------------------------------------------------ reading
    def has_row(self, key: Mapping[str, Any], config_hash: str) -> bool:
        """True if the row with ``key`` exists and was produced by ``config_hash``."""
        cur = self._conn.execute(
            "SELECT config_hash FROM rows WHERE scenario=? AND step=? AND step_index=? "
            "AND method=? AND variant=? AND seed=?",
            tuple(key[k] for k in ROW_KEY),
        )
        got = cur.fetchone()
        return got is not None and got[0] == config_hash

    def get_row(self, key: Mapping[str, Any]) -> dict[str, Any] | None:
        """The row with unique ``key`` (a mapping of :data:`ROW_KEY`), or None."""
        where = " AND ".join(f"{k}=?" for k in ROW_KEY)
        cur = self._conn.execute(f"SELECT * FROM rows WHERE {where}", [key[k] for k in ROW_KEY])
        rec = cur.fetchone()
        return None if rec is None else self._decode(cur, rec)

    def _decode(self, cur: sqlite3.Cursor, rec: Sequence[Any]) -> dict[str, Any]:
        d = dict(zip([c[0] for c in cur.description], rec, strict=True))
        for k in ("metrics", "timings", "info", "versions"):
            d[k] = json.loads(d[k])
        return d

    def rows(self, scenario: str | None = None) -> list[dict[str, Any]]:
        """All rows (of one scenario), ordered by scenario, seed, step index, step, method."""
        sql = "SELECT * FROM rows" + (" WHERE scenario=?" if scenario is not None else "")
        cur = self._conn.execute(sql, (scenario,) if scenario is not None else ())
        out = [self._decode(cur, rec) for rec in cur.fetchall()]
        order = {s: i for i, s in enumerate(STEPS)}
        out.sort(
            key=lambda r: (
                r["scenario"],
                r["seed"],
                r["step_index"],
                order[r["step"]],
                r["method"],
                r["variant"],
            )
        )
        return out

    def ledger(self, scenario: str | None = None) -> list[dict[str, Any]]:
        """The request ledger (request → method → model version → audit summary)."""
        sql = "SELECT * FROM ledger" + (" WHERE scenario=?" if scenario is not None else "")
        sql += " ORDER BY scenario, seed, step_index, method"
        cur = self._conn.execute(sql, (scenario,) if scenario is not None else ())
        cols = [d[0] for d in cur.description]
        out = []
        for rec in cur.fetchall():
            d = dict(zip(cols, rec, strict=True))
            d["metrics_summary"] = json.loads(d["metrics_summary"])
            d.pop("created")
            out.append(d)
        return out

    def scenarios(self) -> dict[str, dict[str, Any]]:
        """``{name: {"config_hash", "config"}}`` of every scenario run into this store."""
        cur = self._conn.execute("SELECT name, config_hash, config FROM scenarios ORDER BY name")
        return {n: {"config_hash": h, "config": json.loads(c)} for n, h, c in cur.fetchall()}

    def summary(
        self, scenario: str, metrics: Sequence[str] | None = None, title: str | None = None
    ) -> Table:
        """Rich table of :func:`summarize` for one scenario."""
        return summary_table(
            summarize(self.rows(scenario), metrics),
            metrics,
            title=title or f"{scenario}: mean ± std over seeds; time = median",
        )


# ------------------------------------------------------------------------------ summaries


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def summarize(
    rows: Iterable[Mapping[str, Any]], metrics: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Group rows by (step_index, step, method, variant) across seeds.

    Quality metrics: ``{"mean", "std", "n"}`` over the seeds where the value is a number (``std``
    is the sample standard deviation, 0 for one seed; ``{"skipped": reason}`` if no seed has a
    number). Timings: the **median** seconds and speed-up (DESIGN.md: "Timings are medians of
    repeated runs; quality metrics are mean ± std over seeds").
    """
    keys = list(metrics) if metrics is not None else list(QUALITY_KEYS)
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["step_index"], r["step"], r["method"], r["variant"]), []).append(r)
    order = {s: i for i, s in enumerate(STEPS)}
    out = []
    for (idx, step, method, variant), rs in sorted(
        groups.items(), key=lambda kv: (kv[0][0], order[kv[0][1]], kv[0][2], kv[0][3])
    ):
        stats: dict[str, Any] = {}
        for k in keys:
            vals = [_num(r["metrics"].get(k)) for r in rs]
            nums = [v for v in vals if v is not None]
            if nums:
                sd = statistics.stdev(nums) if len(nums) > 1 else 0.0
                stats[k] = {"mean": statistics.fmean(nums), "std": sd, "n": len(nums)}
            else:
                reason = next((str(r["metrics"][k]) for r in rs if k in r["metrics"]), "absent")
                stats[k] = {"skipped": reason}
        secs = [s for s in (_num(r["timings"].get("seconds")) for r in rs) if s is not None]
        sps = [s for s in (_num(r["timings"].get("speedup")) for r in rs) if s is not None]
        out.append(
            {
                "step_index": idx,
                "step": step,
                "method": method,
                "variant": variant,
                "seeds": sorted(r["seed"] for r in rs),
                "metrics": stats,
                "seconds_median": statistics.median(secs) if secs else None,
                "speedup_median": statistics.median(sps) if sps else None,
            }
        )
    return out


#: Short column headers of the summary table (full names in the report).
SHORT_NAMES = {
    "acc/retain": "retain",
    "acc/forget": "forget",
    "acc/test": "test",
    "mia_efficacy": "MIA",
    "avg_gap": "gap",
    "contamination/damage_nearest": "dmg near",
}


def summary_table(
    summary: Sequence[Mapping[str, Any]],
    metrics: Sequence[str] | None = None,
    title: str = "results: mean ± std over seeds; time = median",
) -> Table:
    """A compact rich table of :func:`summarize`'s output (one line per step/method/variant).

    The model column reads ``method`` or ``method + variant`` (healing); the request column is
    shown only for sequences; ``± std`` only when more than one seed contributed; forget accuracy
    is left to UA (= 100 − it) unless ``metrics`` names it.
    """
    keys = list(metrics) if metrics is not None else [k for k in QUALITY_KEYS if k != "acc/forget"]
    keys = [k for k in keys if any("skipped" not in s["metrics"].get(k, {"skipped": 1})
                                   for s in summary)]  # fmt: skip
    sequence = len({s["step_index"] for s in summary}) > 1
    n_seeds = sorted({len(s["seeds"]) for s in summary})
    t = Table(title=f"{title} ({'/'.join(map(str, n_seeds))} seed(s))")
    if sequence:
        t.add_column("req", justify="right")
    t.add_column("model")
    for k in keys:
        t.add_column(SHORT_NAMES.get(k, k), justify="right")
    t.add_column("time s", justify="right")
    t.add_column("speed-up", justify="right")
    for s in summary:
        cells = []
        for k in keys:
            m = s["metrics"].get(k, {"skipped": "absent"})
            if "skipped" in m:
                cells.append("[dim]—[/]")
            elif m["n"] > 1:
                cells.append(f"{m['mean']:.2f} ± {m['std']:.2f}")
            else:
                cells.append(f"{m['mean']:.2f}")
        sec, sp = s["seconds_median"], s["speedup_median"]
        name = s["method"] if not s["variant"] else f"{s['method']} + heal {s['variant']}"
        t.add_row(
            *([str(s["step_index"])] if sequence else []),
            name,
            *cells,
            "—" if sec is None else f"{sec:.2f}",
            "—" if sp is None or not math.isfinite(sp) else f"{sp:.1f}×",
        )
    return t


__all__ = [
    "LEDGER_KEY",
    "QUALITY_KEYS",
    "ROW_KEY",
    "STEPS",
    "ResultsStore",
    "summarize",
    "summary_table",
]
