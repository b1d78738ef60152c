"""Report sections on a run as a whole: healing recovery, cost, the request ledger and the
metrics across a request sequence, and the report's overview.

* Healing recovery by similarity and epochs: test accuracy before / after healing vs gold.
* Cost: median wall time and speed-up vs the gold retrain.
* The request ledger (request → method → model version → audit summary) and the metrics over
  the sequence, for sequential scenarios.

A section without data (no heal rows, a single request) is left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from obliviate.audit import SKIP, is_skipped
from obliviate.report import plots
from obliviate.report.aggregate import Stat, aggregate, failure, is_num
from obliviate.report.checks import Row
from obliviate.report.document import (
    SECTION_TITLES,
    Builder,
    Cell,
    Table,
    label_cell,
    stat_cell,
    time_cell,
)
from obliviate.report.groups import Entry, Group, epoch_key, heal_params
from obliviate.report.sections import speed_cell, speed_value


def healing_section(b: Builder, g: Group, level: int, scope: str) -> None:
    """Test accuracy and Avg. Gap before / after each healing variant, and the recovery plot."""
    heals = g.of("heal")
    if not heals:
        return
    unlearn = g.of("unlearn")
    gold = g.gold
    b.heading(level, SECTION_TITLES["healing"], scope)
    t = Table(
        ["Healed method", "Pool", "Similarity", "Epochs", "Test before", "Test after",
         "Gold test", "Δ test", "Avg. Gap before", "Avg. Gap after"]
    )  # fmt: skip
    panels: dict[tuple[str, str], list[tuple[str, str, Stat]]] = {}
    befores: dict[str, Entry | None] = {}
    for e in heals:
        pool, sim, ep = heal_params(e)
        before = befores.setdefault(
            e.method,
            next((u for u in unlearn if u.method == e.method and not u.variant), None)
            or next((u for u in unlearn if u.method == e.method), None),
        )
        after = e.stat("acc/test")
        if before is not None:
            bt, bg = before.stat("acc/test"), stat_cell(before.stat("avg_gap"), 2)
            btc = stat_cell(bt, 2)
        else:
            why = (f"no unlearn row of method {e.method!r} in this step",)
            bt, btc, bg = None, Cell("—", why), Cell("—", why)
        if bt is not None and bt.n and after.n:
            delta = Cell(f"{after.mean - bt.mean:+.2f}")  # type: ignore[operator]
        else:
            delta = Cell("—", ("needs test accuracy before and after healing",))
        t.add(
            [label_cell(e.method), label_cell(pool), label_cell(sim), Cell(ep or "—"),
             btc, stat_cell(after, 2),
             stat_cell(gold.stat("acc/test"), 2) if gold else Cell("—", ("no gold row",)),
             delta, bg, stat_cell(e.stat("avg_gap"), 2)],
            "heal",
        )  # fmt: skip
        panels.setdefault((e.method, pool), []).append((sim, ep, after))
    b.table(t)
    figs = []
    for (method, pool), items in panels.items():
        if not any(s.n for _, _, s in items):
            continue
        sims = sorted({s for s, _, _ in items})
        eps = sorted({ep for _, ep, _ in items}, key=epoch_key)
        mean = np.full((len(eps), len(sims)), np.nan)
        std = np.zeros_like(mean)
        for sim, ep, s in items:
            if s.n:
                mean[eps.index(ep), sims.index(sim)] = s.mean
                std[eps.index(ep), sims.index(sim)] = s.std or 0.0
        before = befores.get(method)
        bt = before.stat("acc/test") if before is not None else None
        gt = gold.stat("acc/test") if gold is not None else None
        figs.append(
            plots.HealPanel(
                title=f"{method} — pool: {pool}" if pool else method,
                similarities=[s or "—" for s in sims],
                epochs=eps,
                after_mean=mean,
                after_std=std,
                before=bt.mean if bt is not None and bt.n else None,
                gold=gt.mean if gt is not None and gt.n else None,
            )
        )
    if figs:
        fig = plots.healing_recovery(figs, plots.EPOCH_COLORS)
        b.figure(fig, f"{scope}-healing", f"{scope}: test accuracy after healing")
    b.para(
        "Test accuracy (%) after healing, by the similarity that picked the healing samples and "
        "the number of fine-tuning epochs; dotted red: the unlearned model before healing; "
        "dashed: gold. Δ test = after − before (means over seeds)."
    )


def cost_section(b: Builder, g: Group, level: int, scope: str) -> None:
    """Median wall time and speed-up vs gold of every step (table and bars)."""
    entries = [e for e in g.entries if e.time().n or e.step in ("unlearn", "heal")]
    if not any(e.time().n for e in entries):
        return
    b.heading(level, SECTION_TITLES["cost"], scope)
    t = Table(["Method", "Step", "Seeds", "Median time (s)", "Speed-up vs gold"])
    for e in entries:
        t.add(
            [label_cell(e.label), label_cell(e.step), Cell(str(len(e.rows))),
             time_cell(e.time()), speed_cell(e, g.gold)],
            e.step,
        )  # fmt: skip
    b.table(t)
    shown = [e for e in entries if e.time().n]
    fig = plots.cost_bars(
        [e.label for e in shown],
        [b.color(e) for e in shown],
        [e.time().median for e in shown],
        [speed_value(e, g.gold) if e.step != "gold" else None for e in shown],
    )
    b.figure(fig, f"{scope}-cost", f"{scope}: median wall time per method")
    b.para(
        "Wall time of each step, median over seeds; speed-up = gold retrain time / method time "
        "(the original's time is its training)."
    )


def _summary_text(v: Any) -> tuple[str, tuple[str, ...]]:
    """A ledger summary value as text, with its skip reason."""
    if is_skipped(v):
        return "—", (v[len(SKIP) :].strip(),)
    if is_num(v):
        return (f"{v:.2f}" if isinstance(v, float | np.floating) else str(v)), ()
    return str(v), ()


def ledger_section(
    b: Builder, scenario: str, groups: list[Group], ledger: list[Mapping[str, Any]], level: int
) -> None:
    """The ledger table of a sequential scenario and its metrics over the sequence."""
    entries = sorted(
        (e for e in ledger if e["scenario"] == scenario),
        key=lambda e: (e["seed"], e["step_index"], str(e["method"])),
    )
    steps = {e["step_index"] for e in entries} | {g.step_index for g in groups}
    if len(steps) < 2:
        return
    if entries:
        b.heading(level, SECTION_TITLES["ledger"], scenario)
        t = Table(
            ["Seed", "Step", "Method", "Request", "Size", "Source", "Model version", "Parent",
             "Summary"]
        )  # fmt: skip
        for e in entries:
            parts, notes = [], []
            for k, v in (e.get("metrics_summary") or {}).items():
                text, why = _summary_text(v)
                parts.append(f"{k}={text}")
                notes += why
            short = [str(e.get(k) or "—")[:12] for k in ("request_hash", "model_version")]
            t.add(
                [Cell(str(e["seed"])), Cell(str(e["step_index"])), label_cell(str(e["method"])),
                 label_cell(short[0]), Cell(str(e.get("request_size", "—"))),
                 label_cell(str(e.get("request_source") or "—")), label_cell(short[1]),
                 label_cell(str(e.get("parent_version") or "—")[:12]),
                 Cell(", ".join(parts) or "—", tuple(notes), numeric=False)],
                "",
            )  # fmt: skip
        b.table(t)
        b.para(
            "Each request produces a new model version from its parent: request → method → "
            "model version → audit summary (hashes shortened to 12 characters)."
        )
    _sequence_plot(b, scenario, groups, level)


def _sequence_plot(b: Builder, scenario: str, groups: list[Group], level: int) -> None:
    """Test accuracy and Avg. Gap of every model version over the request steps."""
    steps = [g.step_index for g in groups]
    labels: dict[str, Entry] = {}
    for g in groups:
        for e in g.models():
            labels.setdefault(e.label, e)
    panels = []
    for name, key in (("Test accuracy (%)", "acc/test"), ("Avg. Gap ↓", "avg_gap")):
        series = []
        for lab, first in labels.items():
            stats = []
            for g in groups:
                e = next((x for x in g.models() if x.label == lab), None)
                stats.append(e.stat(key) if e is not None else aggregate([], key))
            if sum(s.n > 0 for s in stats) >= 1 and any(s.n for s in stats):
                series.append(b.series(first, stats))
        if series:
            panels.append((name, series))
    if not panels:
        return
    b.heading(level, SECTION_TITLES["sequence"], scenario)
    b.figure(
        plots.sequence_lines(steps, panels),
        f"{scenario}-sequence",
        f"{scenario}: metrics over the request sequence",
    )
    b.para("Each point is a model version after that many requests (mean ± std over seeds).")


def scenario_info(groups: list[Group]) -> str:
    """The setting, request strategy and request size recorded in the rows' ``info``."""
    found: dict[str, list[str]] = {}
    for g in groups:
        for e in g.entries:
            for r in e.rows:
                for k in ("setting", "strategy", "request_size"):
                    if k in r.info:
                        found.setdefault(k, [])
                        if str(r.info[k]) not in found[k]:
                            found[k].append(str(r.info[k]))
    names = {"setting": "setting", "strategy": "request strategy", "request_size": "request size"}
    return "; ".join(f"{names[k]}: {', '.join(v)}" for k, v in found.items())


#: The heading of the failed methods' table (shown only when a method failed).
FAILED_TITLE = "Failed"


def failed_section(b: Builder, scenario: str, failed: list[Row], level: int) -> None:
    """The failed rows of ``scenario`` (seed, request, method, reason), if any."""
    rows = sorted(
        (r for r in failed if r.scenario == scenario),
        key=lambda r: (r.seed, r.step_index, r.method, r.variant),
    )
    if not rows:
        return
    b.heading(level, FAILED_TITLE, scenario)
    t = Table(["Seed", "Request", "Method", "Reason"])
    for r in rows:
        name = f"{r.method} [{r.variant}]" if r.variant else r.method
        t.add(
            [Cell(str(r.seed)), Cell(str(r.step_index)), label_cell(name),
             label_cell(failure(r) or "")],
            "failed",
        )  # fmt: skip
    b.table(t)
    b.para(
        "These methods diverged (non-finite loss or weights): they produced no model version, "
        "so they are left out of every table, figure and average above; in a sequence a method "
        "is dropped after the request where it diverged."
    )


def overview(b: Builder, grouped: dict[str, list[Group]], failed: Sequence[Row] = ()) -> None:
    """One line per scenario: request steps, methods, the seeds (``seed 0`` / ``seeds 0, 1, 2``),
    rows; a line on the failed rows, if any."""
    b.heading(2, SECTION_TITLES["overview"])
    t = Table(["Scenario", "Requests", "Methods", "Seeds", "Rows"])
    for scn, groups in grouped.items():
        methods = sorted({e.method for g in groups for e in g.of("unlearn")})
        seeds = sorted({r.seed for g in groups for e in g.entries for r in e.rows})
        nrows = sum(len(e.rows) for g in groups for e in g.entries)
        which = f"{'seed' if len(seeds) == 1 else 'seeds'} {', '.join(map(str, seeds))}"
        t.add(
            [label_cell(scn), Cell(str(len(groups))), label_cell(", ".join(methods) or "—"),
             label_cell(which), Cell(str(nrows))]
        )  # fmt: skip
    b.table(t)
    if failed:
        names = sorted({f"{r.method} ({r.scenario})" for r in failed})
        b.para(
            f"{len(failed)} failed row(s), not counted above: {', '.join(names)} (see each "
            f"scenario's {FAILED_TITLE} table)."
        )


__all__ = [
    "FAILED_TITLE",
    "cost_section",
    "failed_section",
    "healing_section",
    "ledger_section",
    "overview",
    "scenario_info",
]
