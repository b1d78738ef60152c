"""Suite tables: after ``obliviate bench SUITE`` runs, the suite's printer renders its table from
the results store (rows only: a printer never recomputes, so a table can be re-printed later).

A printer is ``fn(store, scenarios) -> list of rich renderables``, registered by suite name::

    @PRINTERS.register("my_suite")
    def my_table(store: ResultsStore, scenarios: Sequence[Scenario]) -> list[RenderableType]: ...

It reads only the rows of ``scenarios`` at their report ``seeds`` (aggregated with
:func:`obliviate.scenarios.store.summarize`, the store's own mean ± std). The suites whose tables
need paired intervals print through a module of :mod:`obliviate.scenarios.tables`
(``print_table(rows, console)``), registered here by :func:`register_rows_printer`.

Failed rows (a method that diverged: :func:`obliviate.report.aggregate.failure`) enter no table:
each printer lists them after its tables with their reasons (:func:`failed_note`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rich.console import Console, RenderableType
from rich.table import Table

from obliviate.registry import Registry
from obliviate.report.aggregate import failure
from obliviate.report.console import print_table
from obliviate.scenarios.schema import Scenario
from obliviate.scenarios.store import ResultsStore, summarize
from obliviate.scenarios.tables import attacks, healing, roka, rurk

Printer = Callable[[ResultsStore, Sequence[Scenario]], list[RenderableType]]
PRINTERS: Registry[Printer] = Registry("suite printer")


def print_suite(suite: str, store: ResultsStore, scenarios: Sequence[Scenario],
                console: Console) -> bool:  # fmt: skip
    """Print suite ``suite``'s table if it registered a printer; returns whether it did."""
    if suite not in PRINTERS:
        return False
    for renderable in PRINTERS.get(suite)(store, scenarios):
        if isinstance(renderable, Table):
            print_table(console, renderable)
        else:
            console.print(renderable)
    return True


class _RowsTable:
    """A renderable that prints a :mod:`obliviate.scenarios.tables` module's table of ``rows``."""

    def __init__(self, fn: Callable[[list[dict[str, Any]], Console], None], rows: list) -> None:
        self.fn, self.rows = fn, rows

    def __rich_console__(self, console: Console, options: Any) -> Any:
        self.fn(self.rows, console)
        return iter(())


def register_rows_printer(suite: str, fn: Callable[[list[dict[str, Any]], Console], None]) -> None:
    """Register ``fn(rows, console)`` as suite ``suite``'s printer (rows of the report seeds)."""

    def printer(store: ResultsStore, scenarios: Sequence[Scenario]) -> list[RenderableType]:
        rows = [r for scn in scenarios for r in report_rows(store, scn)]
        ok = [r for r in rows if failure(r) is None]
        return [_RowsTable(fn, ok)] + failed_note(rows)

    PRINTERS.register(suite)(printer)


def report_rows(store: ResultsStore, scn: Scenario) -> list[dict[str, Any]]:
    """The rows of ``scn`` on its report seeds (other seeds' rows in the store are left out)."""
    return [r for r in store.rows(scn.name) if r["seed"] in scn.seeds]


def failed_note(rows: Sequence[Mapping[str, Any]]) -> list[RenderableType]:
    """A table of the failed rows among ``rows`` (scenario, seed, request, method, reason);
    nothing when there are none."""
    failed = [r for r in rows if failure(r) is not None]
    if not failed:
        return []
    t = Table(title="Failed (not in the tables above)")
    for col in ("scenario", "seed", "req", "method", "reason"):
        t.add_column(col)
    for r in failed:
        t.add_row(r["scenario"], str(r["seed"]), str(r["step_index"]), r["method"],
                  str(failure(r)))  # fmt: skip
    return [t]


def mean_std(stat: Mapping[str, Any] | None) -> str:
    """``mean ± std`` (just the mean for one seed; ``—`` when skipped or absent)."""
    if not stat or "skipped" in stat:
        return "—"
    return f"{stat['mean']:.2f}" if stat["n"] < 2 else f"{stat['mean']:.2f} ± {stat['std']:.2f}"


def _params(p: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in p.items())


@PRINTERS.register("methods")
def methods_table(store: ResultsStore, scenarios: Sequence[Scenario]) -> list[RenderableType]:
    """Per setting: Avg. Gap, UA and test accuracy (mean ± std over the report seeds) of every
    method, the original's and gold's rows first, each tuned method's chosen params beside it."""
    out: list[RenderableType] = []
    failed: list[dict[str, Any]] = []
    for scn in scenarios:
        rows = report_rows(store, scn)
        failed += [r for r in rows if failure(r) is not None]
        rows = [r for r in rows if failure(r) is None]
        if not rows:
            out.append(f"[yellow]{scn.name}: no rows on seeds {scn.seeds} in {store.path}[/]")
            continue
        summary = summarize(rows, ["avg_gap", "ua", "acc/test"])
        tuned = {r["method"]: r["info"]["tuned"] for r in rows if "tuned" in r["info"]}
        origs = {
            s["step_index"]: s["metrics"]["avg_gap"] for s in summary if s["step"] == "original"
        }
        names = [s["method"] for s in summary]
        t = Table(
            title=f"{scn.name}: mean ± std over seeds {sorted(scn.seeds)}"
            + (f"; hyper-parameters tuned on seed {scn.tune.seed}" if scn.tune else "")
            + f" (original's Avg. Gap {mean_std(origs.get(0))})"
        )
        t.add_column("method", no_wrap=True, min_width=max(map(len, names)))
        for col in ("Avg. Gap", "UA", "test acc", "original's gap"):
            t.add_column(col, justify="right", no_wrap=True)
        t.add_column("tuned params")
        multi = len({s["step_index"] for s in summary}) > 1
        for s in summary:
            if s["step"] == "heal":
                continue
            m = s["metrics"]
            label = s["method"] + (f" (req {s['step_index']})" if multi else "")
            tp = tuned.get(s["method"])
            t.add_row(
                label,
                mean_std(m["avg_gap"]),
                mean_std(m["ua"]),
                mean_std(m["acc/test"]),
                mean_std(origs.get(s["step_index"])),
                _params(tp["params"]) if tp else "",
            )
        out.append(t)
    return out + failed_note(failed)


for _suite, _module in (("attacks", attacks), ("healing", healing), ("roka", roka),
                        ("rurk", rurk)):  # fmt: skip
    register_rows_printer(_suite, _module.print_table)

__all__ = [
    "PRINTERS",
    "Printer",
    "failed_note",
    "mean_std",
    "methods_table",
    "print_suite",
    "register_rows_printer",
    "report_rows",
]
