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

``metrics`` maps names to numbers or ``"skipped: <reason>"`` strings. A **failed row** (a method
that diverged, :mod:`obliviate.scenarios.rows`) has the key of the ``unlearn`` row it stands for
and ``metrics`` = ``{"failed": "<one-line reason naming the method and the request>"}`` (a
string: "method 'm' diverged at request i: …", or "skipped: method 'm' diverged at request i"
for the later requests of a sequence); its ``info`` carries the error. It is keyed by
``config_hash`` like any row, so a rerun of the same config keeps it (the same config and seed
diverge the same way); every reader shows its reason and never averages it
(:func:`obliviate.report.aggregate.failure`). A failed row has no ledger entry.

Ledger entry format::

    {"scenario", "seed", "step_index", "request_hash", "request_size", "request_source",
     "method", "model_version", "parent_version", "metrics_summary": {...}}

Schema version: the file carries SQLite's ``application_id`` :data:`APPLICATION_ID` ("OBLV") and
its ``user_version`` :data:`SCHEMA_VERSION`. A store written before stores carried a version
(version 0: the same three tables, no ids) is migrated in place when it is opened for writing
and read as it is when opened read-only. Anything else is refused with a one-line
:class:`ConfigError` naming the file and saying what it is, before the file is touched: an empty
file, a file that is not SQLite, an SQLite database of another application or whose tables have
other columns, and a store of a newer schema version (upgrade obliviate to read it). Readers
(``obliviate report``) open the store with ``read_only=True`` (SQLite ``mode=ro``), which never
writes to the file (SQLite may leave its ``-wal``/``-shm`` companions of a WAL-mode file beside
it). A new store is built under a temporary name and linked into place, so a process never
opens a half-made one. :func:`summarize` is the report's aggregation
(:mod:`obliviate.report.aggregate`), so the summary tables and the report print the same numbers.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from obliviate.audit import SUMMARY_KEYS
from obliviate.errors import ConfigError
from obliviate.report.aggregate import STEPS, mean_std_text
from obliviate.report.aggregate import summarize as _summarize

ROW_KEY = ("scenario", "step", "step_index", "method", "variant", "seed")
LEDGER_KEY = ("scenario", "seed", "step_index", "method")
#: Quality metrics summarised by :func:`summarize` (mean ± std over seeds) by default.
QUALITY_KEYS = SUMMARY_KEYS
#: SQLite ``PRAGMA application_id`` of a results store: "OBLV" in ASCII.
APPLICATION_ID = 0x4F424C56
#: ``PRAGMA user_version`` of the store this code writes (0: a store that records none).
SCHEMA_VERSION = 1
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
#: The columns of each table, in order (versions 0 and 1 share them).
_COLUMNS = {
    "rows": ("scenario", "step", "step_index", "method", "variant", "seed", "config_hash",
             "metrics", "timings", "info", "versions", "created"),
    "ledger": ("scenario", "seed", "step_index", "method", "request_hash", "request_size",
               "request_source", "model_version", "parent_version", "metrics_summary",
               "created"),
    "scenarios": ("name", "config_hash", "config", "created"),
}  # fmt: skip
_SQLITE_MAGIC = b"SQLite format 3\x00"
_NEW = -1  # _inspect: no file, or an SQLite database without any table


def _dumps(o: Any) -> str:
    """JSON with non-finite floats refused (a NaN must be a ``skipped: …`` string instead)."""
    try:
        return json.dumps(o, sort_keys=True, allow_nan=False)
    except ValueError as e:
        raise ConfigError(f"result values must be finite numbers or strings: {e}") from None


def _connect_ro(path: Path) -> sqlite3.Connection:
    """A read-only connection (SQLite URI ``mode=ro``): it cannot write to the file."""
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)


def _inspect(path: Path) -> int:
    """The schema version of the store at ``path`` (:data:`_NEW` if it does not exist or is an
    SQLite database without tables); raise a one-line :class:`ConfigError` naming the file and
    saying what it is when it is not an obliviate results store or is of a newer version.

    Reads only: the file's bytes and modification time are left as they were.
    """
    if not path.exists():
        return _NEW
    where = f"results store {str(path)!r}"
    if not path.is_file():
        raise ConfigError(f"{where} is not a file, so not an obliviate results store")
    with path.open("rb") as f:
        head = f.read(len(_SQLITE_MAGIC))
    if not head:
        raise ConfigError(f"{where} is an empty file, not an obliviate results store")
    if head != _SQLITE_MAGIC:
        raise ConfigError(f"{where} is not an SQLite database, so not an obliviate results store")
    try:
        conn = _connect_ro(path)
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            names = [
                n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            columns = {
                t: tuple(c[1] for c in conn.execute(f"PRAGMA table_info({t})"))
                for t in _COLUMNS
                if t in names
            }
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        raise ConfigError(f"{where} cannot be read as an SQLite database: {e}") from None
    if app_id not in (0, APPLICATION_ID):
        raise ConfigError(
            f"{where} is the SQLite database of another application (application_id "
            f"{app_id:#x}), not an obliviate results store"
        )
    if app_id == APPLICATION_ID and version > SCHEMA_VERSION:
        raise ConfigError(
            f"{where} was written by a newer obliviate (results schema version {version}; this "
            f"one reads up to {SCHEMA_VERSION}): upgrade obliviate to open it"
        )
    if app_id == 0 and not names and version == 0:
        return _NEW
    if app_id == 0 and version != 0:
        raise ConfigError(
            f"{where} is an SQLite database with user_version {version} and no obliviate "
            "application_id, not an obliviate results store"
        )
    missing = [t for t in _COLUMNS if t not in columns]
    if missing and not app_id:
        listed = ", ".join(sorted(names))
        raise ConfigError(
            f"{where} is an SQLite database with tables {listed}, not an obliviate results store"
        )
    if missing:
        raise ConfigError(f"{where} is an obliviate results store without table {missing[0]!r}")
    for t, cols in _COLUMNS.items():
        if columns[t] != cols:
            raise ConfigError(
                f"{where} is an SQLite database whose table {t!r} has columns "
                f"({', '.join(columns[t])}), not an obliviate results store's ({', '.join(cols)})"
            )
    return version if app_id else 0


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    """Bring a store of ``version`` (or a new one) to :data:`SCHEMA_VERSION`, in one transaction.

    Version 0 has today's tables: migrating it only writes the application id and version.
    """
    if version == SCHEMA_VERSION:
        return
    create = _SCHEMA if version == _NEW else ""
    conn.executescript(
        f"BEGIN IMMEDIATE;{create}PRAGMA application_id={APPLICATION_ID};"
        f"PRAGMA user_version={SCHEMA_VERSION};COMMIT;"
    )


def _create(path: Path) -> None:
    """Create an empty store of :data:`SCHEMA_VERSION` at ``path`` as one step: it is built under
    a temporary name beside ``path`` and hard-linked into place only if ``path`` still does not
    exist, so no process ever opens a half-made (empty) file. Where the file system has no hard
    links, the store is created in place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        conn = sqlite3.connect(str(tmp), isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            _migrate(conn, _NEW)
        finally:
            conn.close()
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process created it first: open theirs
        except OSError:
            if not path.exists():
                os.replace(tmp, path)
    finally:
        for f in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            f.unlink(missing_ok=True)


class ResultsStore:
    """SQLite-backed rows + ledger. Safe to reopen while another process appends (WAL).

    ``read_only=True`` opens an existing store for reading only (SQLite ``mode=ro``): nothing is
    created, migrated or written, and the ``put_*`` methods raise :class:`ConfigError`.
    """

    def __init__(
        self, path: str | os.PathLike[str] = "obliviate-results.db", *, read_only: bool = False
    ) -> None:
        self.path = Path(path)
        self.read_only = read_only
        version = _inspect(self.path)
        if read_only and version == _NEW:
            what = "does not exist" if not self.path.exists() else "holds no results tables"
            raise ConfigError(f"results store {str(self.path)!r} {what}")
        try:
            if read_only:
                self._conn = _connect_ro(self.path)
                return
            if version == _NEW and not self.path.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                _create(self.path)
                version = _inspect(self.path)
            self._conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            _migrate(self._conn, version)
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
        if self.read_only:
            raise ConfigError(f"results store {str(self.path)!r} was opened read-only")
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

    def delete_ledger(self, key: Mapping[str, Any]) -> None:
        """Remove the ledger entry with ``key`` (a mapping of :data:`LEDGER_KEY`), if any."""
        where = " AND ".join(f"{k}=?" for k in LEDGER_KEY)
        self._write(f"DELETE FROM ledger WHERE {where}", [key[k] for k in LEDGER_KEY])

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


def summarize(
    rows: Iterable[Mapping[str, Any]], metrics: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Group rows by (step_index, step, method, variant) across seeds
    (:func:`obliviate.report.aggregate.summarize`, the aggregation the report uses).

    Quality metrics (``metrics``, default :data:`QUALITY_KEYS`): ``{"mean", "std", "n"}`` over
    the seeds where the value is a number (``std`` is the sample standard deviation, ``None``
    for one seed, as in the report); ``{"skipped": "skipped: <reason>"}`` if no seed has a
    number. Timings: the **median** seconds and speed-up (DESIGN.md: "Timings are medians of
    repeated runs; quality metrics are mean ± std over seeds").
    """
    return _summarize(rows, list(metrics) if metrics is not None else list(QUALITY_KEYS))


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
    is left to UA (= 100 − it) unless ``metrics`` names it. A model with failed seeds is marked
    ``(failed k/n)``, its cells ``—`` when no seed has a number, and the failures' reasons are
    the table's caption.
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
            else:
                cells.append(mean_std_text(m["mean"], m["std"], 2))
        sec, sp = s["seconds_median"], s["speedup_median"]
        name = s["method"] if not s["variant"] else f"{s['method']} + heal {s['variant']}"
        if s.get("n_failed"):
            name += f" [red](failed {s['n_failed']}/{len(s['seeds'])})[/]"
        t.add_row(
            *([str(s["step_index"])] if sequence else []),
            name,
            *cells,
            "—" if sec is None else f"{sec:.2f}",
            "—" if sp is None or not math.isfinite(sp) else f"{sp:.1f}×",
        )
    reasons = list(dict.fromkeys(f for s in summary for f in s.get("failed") or []))
    if reasons:
        t.caption = "failed: " + "; ".join(reasons)
    return t


__all__ = [
    "APPLICATION_ID",
    "LEDGER_KEY",
    "QUALITY_KEYS",
    "ROW_KEY",
    "SCHEMA_VERSION",
    "STEPS",
    "ResultsStore",
    "summarize",
    "summary_table",
]
