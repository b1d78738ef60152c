"""Report sections on a model's quality, one request step at a time: the metric table vs gold,
accuracy bars, residual knowledge r_τ and per-class contamination.

* Metric table: Retain, UA, Test, MIA efficacy, Avg. Gap (RURK Table 1; the original's gap
  printed beside the methods'), r_τ at the audited τ (RURK Eq. 4), wall time and speed-up vs
  the gold retrain, and a note on matched forgetting.
* Accuracy-vs-gold bars (retain / forget / test).
* r_τ-vs-τ curves per method and the prevalence table (fraction of forget samples with r_τ > 1).
* A per-class heatmap of test accuracy minus gold's (ROKA, arXiv 2603.00436; DESIGN.md
  "Knowledge contamination").

A section without data is left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from obliviate.audit import is_skipped, report_columns
from obliviate.errors import DataFormatError
from obliviate.report import plots
from obliviate.report.aggregate import MISSING, NOT_RECORDED, Stat, aggregate, is_num
from obliviate.report.document import (
    SECTION_TITLES,
    Builder,
    Cell,
    Table,
    label_cell,
    stat_cell,
    time_cell,
)
from obliviate.report.groups import Entry, Group, audited_taus

#: r_τ columns in a metric table when ``taus`` is not given (the r_τ section lists every τ).
MAX_TABLE_TAUS = 3
#: The metric table's quality columns: (header, metric key, decimals).
_QUALITY = report_columns()


def speed_cell(e: Entry, gold: Entry | None) -> Cell:
    """Speed-up vs gold: recorded (median), else gold's median time / this one (noted)."""
    if e.step == "gold":
        return Cell("1.00× (ref.)")
    if e.step == "original":
        return Cell("n/a")
    s = e.speedup()
    if s.n:
        return stat_cell(s, 2, median=True, suffix="×")
    t, g = e.time(), gold.time() if gold is not None else None
    if g is not None and g.n and t.n and t.median:
        return Cell(
            f"{g.median / t.median:.2f}×",  # type: ignore[operator]
            ("speed-up computed as gold's median time / this median time",),
        )
    return Cell("—", s.reasons or (NOT_RECORDED,))


def speed_value(e: Entry, gold: Entry | None) -> float | None:
    """The number behind :func:`speed_cell` (None where it shows none)."""
    if e.step == "gold":
        return 1.0
    if e.step == "original":
        return None
    s = e.speedup()
    if s.n:
        return s.median
    t, g = e.time(), gold.time() if gold is not None else None
    if g is not None and g.n and t.n and t.median:
        return g.median / t.median  # type: ignore[operator]
    return None


def _spread(taus: list[tuple[float, str]], k: int) -> list[tuple[float, str]]:
    """At most ``k`` of ``taus``, spread evenly over the non-zero ones (smallest and largest
    included); τ = 0 (no perturbation) is dropped first."""
    if len(taus) <= k:
        return taus
    pool = [t for t in taus if t[0] > 0] or taus
    idx = sorted({round(i) for i in np.linspace(0, len(pool) - 1, min(k, len(pool)))})
    return [pool[i] for i in idx]


def metrics_section(b: Builder, g: Group, level: int, scope: str) -> None:
    """The metric table of one request step, with its reading notes."""
    models = g.models()
    if not models:
        return
    all_taus = audited_taus(models)
    if b.table_taus is not None:
        taus = [(t, k) for t, k in all_taus if any(math.isclose(t, w) for w in b.table_taus)]
    else:
        taus = _spread(all_taus, MAX_TABLE_TAUS)
    cols = list(_QUALITY) + [(f"r_τ@{t:g}", f"{k}/mean", 3) for t, k in taus]
    cols = [c for c in cols if any(e.has(c[1]) for e in models)]
    b.heading(level, SECTION_TITLES["metrics"], scope)
    t = Table(["Method", "Seeds"] + [c[0] for c in cols] + ["Time (s)", "Speed-up vs gold"])
    for e in models:
        cells = [label_cell(e.label), Cell(str(len(e.rows)))]
        cells += [
            Cell("1 (ref.)")
            if e.step == "gold" and key.startswith("r_tau@") and not e.stat(key).n
            else stat_cell(e.stat(key), d)
            for _, key, d in cols
        ]
        cells += [time_cell(e.time()), speed_cell(e, g.gold)]
        t.add(cells, e.step)
    b.table(t)
    seeds = sorted({r.seed for e in models for r in e.rows})
    over = (
        f"mean ± sample std over seeds {', '.join(map(str, seeds))}"
        if len(seeds) > 1
        else f"seed {seeds[0]} only (no std)"
    )
    text = (
        f"Quality metrics: {over}; times: medians. UA = 100 − forget accuracy. Avg. Gap = "
        "mean |metric − gold's| over Retain, UA, Test, MIA efficacy (RURK Table 1)"
    )
    orig = g.original
    if orig is not None and orig.stat("avg_gap").n:
        text += (
            f"; the untouched original's gap is {orig.stat('avg_gap').mean:.2f}, the bar a method "
            "must get below"
        )
    if taus:
        text += (
            ". r_τ = hits(unlearned) / hits(gold) on the same perturbed forget samples (RURK "
            "Eq. 4): 1 is gold's level, above 1 is residual knowledge"
        )
        if len(taus) < len(all_taus):
            text += f" (all {len(all_taus)} τ under {SECTION_TITLES['residual']})"
    b.para(text + ".")
    note = _matched_note(models)
    if note:
        b.para(note)


def _matched_note(models: Sequence[Entry]) -> str:
    """One sentence on matched forgetting: each method run with a ``stop_forget_acc`` target
    (the scenario's ``matched_forgetting``), whether it stopped by the rule on every seed, and
    its median number of steps."""
    parts, targets = [], []
    for e in models:
        if e.step != "unlearn":
            continue
        tg = [r.info.get("params", {}).get("stop_forget_acc") for r in e.rows]
        if not all(is_num(t) and t >= 0 for t in tg):
            continue
        targets += tg
        stats = [r.info.get("stats") or {} for r in e.rows]
        hit = sum(bool(st.get("stopped_early")) for st in stats)
        steps = [st["steps"] for st in stats if is_num(st.get("steps"))]
        step_txt = f", median {float(np.median(steps)):g} steps" if steps else ""
        parts.append(f"{e.label} {hit}/{len(stats)} seeds{step_txt}")
    if not parts:
        return ""
    lo, hi = min(targets), max(targets)
    rng = f"{lo:.2f} %" if math.isclose(lo, hi) else f"{lo:.2f}–{hi:.2f} %"
    return (
        f"Matched forgetting: each of these methods stops once its accuracy on the request is "
        f"≤ gold's + margin ({rng}); reached by the rule on: {'; '.join(parts)}."
    )


def accuracy_section(b: Builder, g: Group, level: int, scope: str) -> None:
    """Retain / forget / test accuracy bars of every model beside gold's."""
    models = g.models()
    if g.gold is None or len(models) < 2:
        return
    panels = [
        (name, key)
        for name, key in (("Retain", "acc/retain"), ("Forget", "acc/forget"), ("Test", "acc/test"))
        if any(e.stat(key).n for e in models)
    ]
    if not panels:
        return
    b.heading(level, SECTION_TITLES["accuracy"], scope)
    series = [b.series(e, [e.stat(k) for _, k in panels]) for e in models]
    fig = plots.accuracy_vs_gold(series, [n for n, _ in panels])
    b.figure(fig, f"{scope}-accuracy", f"{scope}: accuracy of each method vs gold")
    b.para(
        "Bars: mean over seeds (error bar: std); the dashed line is gold's value. The value "
        "axis starts near the lowest bar, not at 0."
    )


def residual_section(b: Builder, g: Group, level: int, scope: str) -> None:
    """r_τ-vs-τ curves and table, and the prevalence of r_τ > 1."""
    cands = [e for e in g.models() if e.step != "gold"]
    taus = audited_taus(cands)
    if not taus:
        return
    curves = [(e, [e.stat(f"{k}/mean") for _, k in taus]) for e in cands]
    curves = [(e, st) for e, st in curves if any(s.n for s in st)]
    prev = [(e, [e.stat(f"{k}/frac_gt1") for _, k in taus]) for e in cands]
    prev = [(e, st) for e, st in prev if any(e.has(f"{k}/frac_gt1") for _, k in taus)]
    if not curves and not prev:
        return
    b.heading(level, SECTION_TITLES["residual"], scope)
    if curves:
        fig = plots.residual_curves([t for t, _ in taus], [b.series(e, st) for e, st in curves])
        b.figure(fig, f"{scope}-residual", f"{scope}: r_τ vs τ per method")
    else:
        b.para("No method has a numeric r_τ at any τ (see the notes).")
    mean_t = Table(["Method"] + [f"τ = {t:g}" for t, _ in taus])
    for e, st in curves:
        mean_t.add([label_cell(e.label)] + [stat_cell(s, 3) for s in st], e.step)
    b.table(mean_t)
    if curves:
        b.para(
            "r_τ per τ, mean ± std over seeds; τ is the perturbation scale in pixel units "
            "(inputs in [0, 1]). Error bars in the figure: std over seeds."
        )
    if prev:
        b.heading(level + 1, SECTION_TITLES["prevalence"], scope)
        t = Table(["Method"] + [f"τ = {t:g}" for t, _ in taus])
        for e, st in prev:
            t.add([label_cell(e.label)] + [stat_cell(s, 3) for s in st], e.step)
        b.table(t)
        b.para(
            "Fraction of forget samples whose r_τ exceeds 1 (the model recognises them more "
            "often than gold does), mean ± std over seeds."
        )


def _per_class(e: Entry) -> dict[str, Stat]:
    """Per-class test accuracy over seeds (classes in first-seen order)."""
    classes: dict[str, list[Any]] = {}
    for r in e.rows:
        pc = r.metrics.get("per_class/test")
        if pc is None or is_skipped(pc):
            continue
        if not isinstance(pc, Mapping):
            raise DataFormatError(f"{e.label}: per_class/test must be a mapping, got {pc!r}")
        for c in pc:
            classes.setdefault(str(c), [])
    for c in classes:
        for r in e.rows:
            pc = r.metrics.get("per_class/test")
            v = pc.get(c, MISSING) if isinstance(pc, Mapping) else (pc or MISSING)
            classes[c].append(v)
    return {c: aggregate(v, f"{e.label}: per-class accuracy of {c!r}") for c, v in classes.items()}


def contamination_section(b: Builder, g: Group, level: int, scope: str) -> None:
    """Per-class test accuracy minus gold's (heatmap, table) and the damage summary."""
    gold = g.gold
    if gold is None:
        return
    gold_pc = _per_class(gold)
    others = [(e, _per_class(e)) for e in g.models() if e.step != "gold"]
    others = [(e, pc) for e, pc in others if pc]
    if not gold_pc or not others:
        return
    declared = next((r.info["class_names"] for r in gold.rows if "class_names" in r.info), [])
    classes = [str(c) for c in declared if str(c) in gold_pc]  # the dataset's order, if known
    for pc in (gold_pc, *(pc for _, pc in others)):
        classes += [c for c in pc if c not in classes]
    mat = np.full((len(others), len(classes)), np.nan)
    for i, (_, pc) in enumerate(others):
        for j, c in enumerate(classes):
            a, gd = pc.get(c), gold_pc.get(c)
            if a is not None and gd is not None and a.n and gd.n:
                mat[i, j] = a.mean - gd.mean  # type: ignore[operator]
    b.heading(level, SECTION_TITLES["contamination"], scope)
    fig = plots.contamination_heatmap([e.label for e, _ in others], classes, mat)
    b.figure(fig, f"{scope}-contamination", f"{scope}: per-class test accuracy minus gold's")
    t = Table(["Method"] + classes)
    for (e, _), row in zip(others, mat, strict=True):
        t.add(
            [label_cell(e.label)]
            + [Cell(f"{v:+.2f}") if math.isfinite(v) else Cell("—", (NOT_RECORDED,)) for v in row],
            e.step,
        )
    b.table(t)
    b.para(
        "Per-class test accuracy minus gold's, in percentage points (mean over seeds; negative, "
        "red: damage to classes the request did not name)."
    )
    keys = [
        ("Damage, k nearest classes (pp)", "contamination/damage_nearest"),
        ("Damage, rest (pp)", "contamination/damage_rest"),
    ]
    keys = [k for k in keys if any(e.has(k[1]) for e, _ in others)]
    if keys:
        s = Table(["Method"] + [k[0] for k in keys])
        for e, _ in others:
            s.add([label_cell(e.label)] + [stat_cell(e.stat(k), 2) for _, k in keys], e.step)
        b.table(s)
        b.para(
            "Contamination summary (DESIGN.md): mean accuracy damage vs gold on the classes "
            "nearest the request (class-centroid cosine in the original's penultimate layer) "
            "and on the rest."
        )


__all__ = [
    "MAX_TABLE_TAUS",
    "accuracy_section",
    "contamination_section",
    "metrics_section",
    "residual_section",
    "speed_cell",
    "speed_value",
]
