"""Table of the ``healing`` suite (Jasiorski, Klonowski & Woźniak, arXiv 2507.10886): test accuracy
of each healed model against the gold retrain, per scenario, method and healing variant (pool /
similarity / epochs), with the unlearned model it started from.

Δ gold is healed − gold test accuracy (pp), per seed and as the mean with its 95 % t-interval;
the target is a mean Δ ≥ −0.5 pp (healed within half a point of gold, or above it). "no repl."
counts forgotten elements healed without a same-class replacement (``fallback:
remaining_only``), summed over seeds.
"""

from __future__ import annotations

import statistics
from typing import Any

from rich.console import Console

from obliviate.scenarios.tables import _common as cm

TARGET_PP = 0.5


def _scenario_table(name: str, rows: list[cm.Row], console: Console) -> list[float]:
    """Print one scenario's table; return the mean Δ gold of each (method, variant)."""
    idx = cm.index(rows)
    seeds = sorted({r["seed"] for r in rows})

    def acc(step: str, method: str, variant: str, seed: int, i: int) -> float | None:
        return cm.metric(idx.get((name, seed, i, step, method, variant)), "acc/test")

    steps = sorted({r["step_index"] for r in rows})
    gaps: list[float] = []
    for i in steps:
        gold = [acc("gold", "gold", "", s, i) for s in seeds]
        orig = [acc("original", "original", "", s, i) for s in seeds]
        req = next(r for r in rows if r["step_index"] == i)["info"].get("request", {})
        t = cm.table(
            f"{name}, request {i} ({req.get('name', '?')}, {req.get('size', '?')} ids), seeds "
            f"{seeds}: original {cm.fmt_mean_std(orig)} %, gold {cm.fmt_mean_std(gold)} % — "
            f"target ≥ gold − {TARGET_PP} pp",
            ("method", "unlearned %", "variant", "healed %", "Δ gold per seed", "Δ gold (pp)",
             "target", "no repl."),
        )  # fmt: skip
        heals = [r for r in rows if r["step"] == "heal" and r["step_index"] == i]
        for m, v in cm.ordered((r["method"], r["variant"]) for r in heals):
            healed = {s: acc("heal", m, v, s, i) for s in seeds}
            delta = cm.paired(healed, dict(zip(seeds, gold, strict=True)))
            mean = statistics.fmean(delta) if delta else float("nan")
            gaps += [mean] if delta else []
            no_repl = sum(
                int((r["info"].get("stats") or {}).get("n_without_replacement") or 0)
                for r in heals
                if (r["method"], r["variant"]) == (m, v)
            )
            t.add_row(
                m,
                cm.fmt_mean_std([acc("unlearn", m, "", s, i) for s in seeds]),
                v,
                cm.fmt_mean_std(healed.values()),
                " ".join(f"{d:+.2f}" for d in delta),
                cm.fmt_interval(delta),
                ("[green]yes[/]" if mean >= -TARGET_PP else "[red]no[/]") if delta else "—",
                "—" if v.startswith("none/") else str(no_repl),
            )
        console.print(t)
    return gaps


def print_table(rows: list[dict[str, Any]], console: Console) -> None:
    """Print the healing suite's tables (one per scenario and request) and the target summary."""
    gaps: list[float] = []
    for name in cm.ordered(r["scenario"] for r in rows):
        gaps += _scenario_table(name, [r for r in rows if r["scenario"] == name], console)
    if gaps:
        hit = sum(g >= -TARGET_PP for g in gaps)
        console.print(
            f"healing target (mean healed test accuracy ≥ gold − {TARGET_PP} pp) met in "
            f"{hit}/{len(gaps)} configurations; worst mean gap {min(gaps):+.2f} pp"
        )
