"""Table of the ``roka`` suite (ROKA, arXiv 2603.00436): under the indirect attack (forget the
class nearest to a victim class), each method's forget-class and victim-class accuracy at matched
forgetting, and the victim's loss relative to gold.

Forget accuracy is the accuracy on the request (100 − UA); victim accuracy the test accuracy of
the victim class; "loss vs gold" is gold's victim accuracy − the model's (pp; positive = damage
the gold retrain does not do). "matched" says whether the model ended at or below the scenario's
matched-forgetting target (gold's forget accuracy + margin, the ``stop_forget_acc`` the runner set);
methods without a stopping rule are matched only if they got there by themselves.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console

from obliviate.scenarios.tables import _common as cm


def _victim_acc(r: cm.Row) -> float | None:
    pc, v = r["metrics"].get("per_class/test"), r["info"]["request"].get("victim_class_name")
    return float(pc[v]) if isinstance(pc, dict) and v in pc else None


def _target(rows: list[cm.Row]) -> float | None:
    """The matched-forgetting target of one (scenario, seed, step): any covered method's
    ``stop_forget_acc``."""
    for r in rows:
        v = (r["info"].get("params") or {}).get("stop_forget_acc")
        if isinstance(v, int | float) and v >= 0:
            return float(v)
    return None


def print_table(rows: list[dict[str, Any]], console: Console) -> None:
    """Print one line per (scenario, seed, request, model), then victim loss vs gold per method
    (mean ± std over seeds)."""
    t = cm.table(
        "ROKA suite: indirect attack at matched forgetting (forget the victim's nearest class)",
        ("scenario", "seed", "victim", "forgets", "model", "steps", "forget acc", "victim acc",
         "loss vs gold (pp)", "matched", "time (s)"),
    )  # fmt: skip
    losses: dict[tuple[str, str], list[float]] = {}
    groups = cm.ordered((r["scenario"], r["seed"], r["step_index"]) for r in rows)
    for name, seed, i in groups:
        rs = [r for r in rows if (r["scenario"], r["seed"], r["step_index"]) == (name, seed, i)]
        gold = next((r for r in rs if r["step"] == "gold"), None)
        gold_v = None if gold is None else _victim_acc(gold)
        target = _target(rs)
        for r in rs:
            if r["step"] not in ("original", "gold", "unlearn"):
                continue
            req, names = r["info"]["request"], r["info"].get("class_names", [])
            fc = req.get("forget_class")
            forget = cm.metric(r, "acc/forget")
            loss = cm.sub(gold_v, _victim_acc(r))
            if r["step"] == "unlearn" and loss is not None:
                losses.setdefault((name, r["method"]), []).append(loss)
            matched = "—" if target is None or forget is None else (
                "yes" if forget <= target + 1e-9 else "NO")  # fmt: skip
            t.add_row(
                name,
                str(seed),
                str(req.get("victim_class_name", "?")),
                "—" if fc is None else str(names[fc] if fc < len(names) else fc),
                r["method"],
                str((r["info"].get("stats") or {}).get("steps", "—")),
                "—" if forget is None else f"{forget:.2f}",
                cm.fmt_mean_std([_victim_acc(r)]),
                "—" if loss is None else f"{loss:+.2f}",
                matched if r["step"] == "unlearn" else "—",
                f"{r['timings']['seconds']:.1f}" if r["step"] == "unlearn" else "—",
            )
    console.print(t)
    s = cm.table("victim loss vs gold (pp), mean ± std over seeds", ("scenario", "method", "loss"))
    for (name, m), vals in losses.items():
        s.add_row(name, m, cm.fmt_mean_std(vals))
    console.print(s)
