"""Table of the ``attacks`` suite (arXiv 2507.10886; ROKA, arXiv 2603.00436): test-accuracy drop
(original − model, pp; mean ± 95 % t-interval over seeds) per request strategy and method with the
paired Δ to ``random`` (gold rows = retrain), and the indirect attack's victim-class drop. Verdict:
≥ 2 approximate methods whose best strategy beats random by ≥ 2 pp (interval excluding 0), and
retrain within 0.5 pp of random under every strategy."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from rich.console import Console

from obliviate.scenarios.tables import _common as cm

RETRAIN = "retrain (gold)"
Drops = dict[str, dict[str, dict[int, float | None]]]


def _drops(rows: list[cm.Row], value: Callable[[cm.Row | None], float | None]) -> Drops:
    """drops[method][request label][seed] of one scenario (``value`` reads the metric)."""
    idx = cm.index(rows)
    out: Drops = {}
    for r in rows:
        if r["step"] in ("unlearn", "gold"):
            orig = idx.get((r["scenario"], r["seed"], r["step_index"], "original", "original", ""))
            per = out.setdefault(RETRAIN if r["step"] == "gold" else r["method"], {})
            per.setdefault(_label(r), {})[r["seed"]] = cm.sub(value(orig), value(r))
    return dict(sorted(out.items(), key=lambda kv: kv[0] == RETRAIN))


def _label(r: cm.Row) -> str:
    req = r["info"].get("request", {})
    victim = req.get("victim_class_name")
    return f"{victim}|{req.get('name')}" if victim else str(req.get("strategy") or req.get("name"))


def _requests_table(name: str, rows: list[cm.Row], console: Console) -> None:
    drops = _drops(rows, lambda r: cm.metric(r, "acc/test"))
    strategies, seeds = cm.ordered(_label(r) for r in rows), sorted({r["seed"] for r in rows})
    title = f"{name}: test-accuracy drop (pp), mean ± 95 % interval, seeds {seeds}; [Δ vs random]"
    t = cm.table(title, ("method", *strategies))
    wins, retrain_ok = [], None
    for m, per in drops.items():
        cells, best = [], (-math.inf, math.nan, "")
        for s in strategies:
            vals = per.get(s, {})
            cells.append(cm.fmt_interval(vals.values(), total=len(vals)))
            if s != "random" and "random" in per:
                diff = cm.paired(vals, per["random"])
                md, hd, _ = cm.interval(diff)
                cells[-1] += f" [{cm.fmt_interval(diff)}]"
                if m == RETRAIN and not math.isnan(md):
                    retrain_ok = abs(md) <= 0.5 and retrain_ok is not False
                elif m != RETRAIN and md > best[0]:
                    best = (md, hd, s)
        t.add_row(m, *cells)
        if best[0] >= 2.0 and not math.isnan(best[1]) and best[0] > best[1]:
            wins.append(f"{m} ({best[2]}: {best[0]:+.2f} ± {best[1]:.2f})")
    console.print(t)
    console.print(
        f"target on {name}: ≥ 2 approximate methods where the best strategy beats random by ≥ 2 pp "
        f"(interval excluding 0): {len(wins)} — {', '.join(wins) or 'none'}; retrain within "
        f"0.5 pp of random: {retrain_ok} → {'MET' if len(wins) >= 2 and retrain_ok else 'NOT MET'}"
    )


def _victim_acc(r: cm.Row | None) -> float | None:
    if r is None:
        return None
    pc, v = r["metrics"].get("per_class/test"), r["info"]["request"].get("victim_class_name")
    return float(pc[v]) if isinstance(pc, dict) and v in pc else None


def _indirect_table(name: str, rows: list[cm.Row], console: Console) -> None:
    drops = _drops(rows, _victim_acc)
    forgets: dict[str, set[str]] = {}
    for r in rows:
        req, names = r["info"]["request"], r["info"].get("class_names", [])
        fc = req.get("forget_class")
        label = f"{req.get('name')}: {'mixed' if fc is None else names[fc]}"
        forgets.setdefault(req["victim_class_name"], set()).add(label)
    seeds = sorted({r["seed"] for r in rows})
    title = f"{name}: victim-class test-accuracy drop (pp), mean ± 95 % interval, seeds {seeds}"
    t = cm.table(title, ("victim", "forgotten classes", "method", "nearest", "farthest", "random"))
    for v in cm.ordered(_label(r).split("|")[0] for r in rows):
        for m, per in drops.items():
            cells = [per.get(f"{v}|{k}", {}).values() for k in ("nearest", "farthest", "random")]
            t.add_row(v, ", ".join(sorted(forgets[v])), m, *(cm.fmt_interval(c) for c in cells))
    console.print(t)


def print_table(rows: list[dict[str, Any]], console: Console) -> None:
    """Print the attacks suite's tables (one per scenario found in ``rows``)."""
    for name in cm.ordered(r["scenario"] for r in rows):
        rs = [r for r in rows if r["scenario"] == name]
        indirect = any("victim_class_name" in r["info"].get("request", {}) for r in rs)
        (_indirect_table if indirect else _requests_table)(name, rs, console)
