"""The visual report of a results store (issue #7): ``obliviate report RESULTS.db --out report/``.

:func:`build_report` turns result rows and request-ledger entries (the results store's format,
see :func:`build_report`) into ``report.md`` (GitHub markdown, images as relative links under
``figures/``) and ``report.html`` (one self-contained page: CSS inline, images base64-embedded,
no script, no external resource). Per scenario, and per request for sequential scenarios, it
shows what DESIGN.md's "Definitions to share" define:

* the metric table with the gold and original rows: Retain, UA, Test, MIA efficacy, Avg. Gap
  (RURK Table 1; the original's gap printed beside the methods'), r_τ at the audited τ (RURK
  Eq. 4), wall time and speed-up vs the gold retrain;
* accuracy-vs-gold bars (retain / forget / test);
* r_τ-vs-τ curves per method and the prevalence table (fraction of forget samples with r_τ > 1);
* a per-class contamination heatmap: per-class test accuracy minus gold's (ROKA, arXiv
  2603.00436; DESIGN.md "Knowledge contamination");
* healing recovery by similarity and epochs (test accuracy before / after healing vs gold);
* cost: median wall time and speed-up vs gold;
* the request ledger and the metrics across the sequence, for sequential scenarios.

Aggregation (DESIGN.md "Cost"): quality metrics are mean ± std over seeds, with the *sample*
standard deviation (``ddof=1``, the unbiased estimate; with one seed only the mean is shown);
timings are medians. A metric recorded as ``"skipped: <reason>"`` shows as "—" with the reason
as a footnote (and as the cell's ``title`` in HTML); when only some seeds have a number, the mean
is over those and the footnote says how many. Sections without data (no heal rows, no per-class
accuracies, a single request) are left out. The same rows give the same text and byte-identical
figures; only the optional ``generated`` line carries a timestamp.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from obliviate._io import atomic_dir, atomic_write_bytes
from obliviate.audit import SKIP, is_skipped, report_columns
from obliviate.errors import ConfigError, DataFormatError
from obliviate.scenarios import _plots

STEPS: tuple[str, ...] = ("original", "gold", "unlearn", "heal")
#: Section headings (also what the tests look for).
SECTION_TITLES: dict[str, str] = {
    "overview": "Overview",
    "metrics": "Metrics vs gold",
    "accuracy": "Accuracy vs gold",
    "residual": "Residual knowledge r_τ vs τ",
    "prevalence": "Prevalence of r_τ > 1",
    "contamination": "Per-class contamination",
    "healing": "Healing recovery",
    "cost": "Cost",
    "ledger": "Request ledger",
    "sequence": "Across the request sequence",
    "notes": "Notes",
}
NOT_RECORDED = "not recorded"
#: r_τ columns in a metric table when ``taus`` is not given (the r_τ section lists every τ).
MAX_TABLE_TAUS = 3
FIGURES_DIR = "figures"
_ROW_KEYS = ("scenario", "step", "step_index", "method", "seed", "metrics")
_LEDGER_KEYS = ("scenario", "seed", "step_index", "method")
_TAU_MEAN = re.compile(r"^r_tau@([^/]+)/mean$")
_MISSING = object()


@dataclass(frozen=True)
class ReportPaths:
    """Where :func:`build_report` wrote the report."""

    markdown: Path
    html: Path
    images: list[Path]


# ------------------------------------------------------------------------------ input checking


@dataclass(frozen=True)
class _Row:
    scenario: str
    step: str
    step_index: int
    method: str
    variant: str
    seed: int
    metrics: Mapping[str, Any]
    timings: Mapping[str, Any]
    info: Mapping[str, Any]


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _check_rows(rows: Iterable[Mapping[str, Any]]) -> list[_Row]:
    """Validate result rows; raise :class:`DataFormatError` naming the row and the key."""
    out: list[_Row] = []
    seen: dict[tuple[Any, ...], int] = {}
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping):
            raise DataFormatError(f"result row {i}: expected a mapping, got {type(r).__name__}")
        where = f"result row {i} (scenario={r.get('scenario')!r}, method={r.get('method')!r})"
        missing = [k for k in _ROW_KEYS if k not in r]
        if missing:
            raise DataFormatError(f"{where} lacks key(s) {', '.join(missing)}")
        if r["step"] not in STEPS:
            raise DataFormatError(f"{where}: step {r['step']!r} is not one of {', '.join(STEPS)}")
        for k in ("step_index", "seed"):
            if not _is_int(r[k]):
                raise DataFormatError(f"{where}: {k} must be an integer, got {r[k]!r}")
        for k in ("scenario", "method"):
            if not isinstance(r[k], str) or not r[k]:
                raise DataFormatError(f"{where}: {k} must be a non-empty string, got {r[k]!r}")
        variant = r.get("variant") or ""
        if not isinstance(variant, str):
            raise DataFormatError(f"{where}: variant must be a string, got {variant!r}")
        for k in ("metrics", "timings", "info"):
            v = r.get(k)
            if v is not None and not isinstance(v, Mapping):
                raise DataFormatError(f"{where}: {k} must be a mapping, got {type(v).__name__}")
        row = _Row(
            scenario=r["scenario"],
            step=r["step"],
            step_index=int(r["step_index"]),
            method=r["method"],
            variant=variant,
            seed=int(r["seed"]),
            metrics=r["metrics"],
            timings=r.get("timings") or {},
            info=r.get("info") or {},
        )
        key = (row.scenario, row.step_index, row.step, row.method, row.variant, row.seed)
        if key in seen:
            raise DataFormatError(
                f"result rows {seen[key]} and {i} are duplicates: scenario {row.scenario!r}, "
                f"step_index {row.step_index}, step {row.step!r}, method {row.method!r}, "
                f"variant {row.variant!r}, seed {row.seed}"
            )
        seen[key] = i
        out.append(row)
    if not out:
        raise DataFormatError("no result rows to report")
    return out


def _check_ledger(ledger: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    out = []
    for i, e in enumerate(ledger):
        if not isinstance(e, Mapping):
            raise DataFormatError(f"ledger entry {i}: expected a mapping, got {type(e).__name__}")
        missing = [k for k in _LEDGER_KEYS if k not in e]
        if missing:
            raise DataFormatError(f"ledger entry {i} lacks key(s) {', '.join(missing)}")
        for k in ("seed", "step_index"):
            if not _is_int(e[k]):
                raise DataFormatError(f"ledger entry {i}: {k} must be an integer, got {e[k]!r}")
        out.append(e)
    return out


# ------------------------------------------------------------------------------ aggregation


@dataclass(frozen=True)
class Stat:
    """One metric of one model over its seeds: numbers aggregated, the rest kept as reasons."""

    mean: float | None
    std: float | None  # sample std (ddof=1); None with fewer than two numbers
    median: float | None
    n: int  # seeds with a number
    total: int  # seeds
    reasons: tuple[str, ...]  # why the other seeds have no number (unique, in order)


def aggregate(values: Sequence[Any], where: str = "metric") -> Stat:
    """Mean, sample std (ddof=1) and median of the numbers in ``values``.

    ``"skipped: <reason>"`` strings, missing values and non-finite numbers are not averaged;
    their reasons are kept. Any other value raises :class:`DataFormatError` naming ``where``.
    """
    nums: list[float] = []
    reasons: list[str] = []
    for v in values:
        if v is _MISSING or v is None:
            reasons.append(NOT_RECORDED)
        elif is_skipped(v):
            reasons.append(v[len(SKIP) :].strip() or "skipped")
        elif isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool):
            if math.isfinite(float(v)):
                nums.append(float(v))
            else:
                reasons.append(f"not finite ({v})")
        else:
            raise DataFormatError(f"{where}: expected a number or 'skipped: <reason>', got {v!r}")
    a = np.asarray(nums, dtype=float)
    return Stat(
        mean=float(a.mean()) if a.size else None,
        std=float(a.std(ddof=1)) if a.size >= 2 else None,
        median=float(np.median(a)) if a.size else None,
        n=int(a.size),
        total=len(values),
        reasons=tuple(dict.fromkeys(reasons)),
    )


@dataclass(frozen=True)
class _Entry:
    """The rows of one model (step, method, variant) in one request step: one per seed."""

    step: str
    method: str
    variant: str
    rows: tuple[_Row, ...]

    @property
    def label(self) -> str:
        if self.step == "gold":
            return "gold (retrain)"
        if self.step == "original":
            return "original"
        if self.step == "heal":
            return f"{self.method} + heal {self.variant}".rstrip()
        return f"{self.method} [{self.variant}]" if self.variant else self.method

    def stat(self, key: str) -> Stat:
        return aggregate(
            [r.metrics.get(key, _MISSING) for r in self.rows],
            f"{self.label}: metric {key!r}",
        )

    def has(self, key: str) -> bool:
        return any(key in r.metrics for r in self.rows)

    def time(self) -> Stat:
        """Wall time per seed: ``metrics["time_s"]``, else ``timings["seconds"]``."""
        vals = []
        for r in self.rows:
            v = r.metrics.get("time_s", _MISSING)
            t = r.timings.get("seconds")
            vals.append(v if _is_num(v) or not _is_num(t) else t)
        return aggregate(vals, f"{self.label}: time")

    def speedup(self) -> Stat:
        """Recorded speed-up vs gold per seed: ``metrics["speedup"]``, else ``timings``."""
        vals = []
        for r in self.rows:
            v = r.metrics.get("speedup", _MISSING)
            t = r.timings.get("speedup")
            vals.append(v if _is_num(v) or not _is_num(t) else t)
        return aggregate(vals, f"{self.label}: speed-up")


def _is_num(v: Any) -> bool:
    return (
        isinstance(v, int | float | np.integer | np.floating)
        and not isinstance(v, bool)
        and math.isfinite(float(v))
    )


@dataclass
class _Group:
    """Everything recorded for one request step of one scenario."""

    scenario: str
    step_index: int
    entries: list[_Entry]

    def of(self, step: str) -> list[_Entry]:
        return [e for e in self.entries if e.step == step]

    @property
    def original(self) -> _Entry | None:
        return next(iter(self.of("original")), None)

    @property
    def gold(self) -> _Entry | None:
        return next(iter(self.of("gold")), None)

    def models(self) -> list[_Entry]:
        """Original, gold, then the unlearning methods."""
        return [e for e in (self.original, self.gold) if e is not None] + self.of("unlearn")


def _heal_params(e: _Entry) -> tuple[str, str, str]:
    """(pool, similarity, epochs) of a heal entry: from ``info``, else from the variant
    ``"pool/similarity/e<epochs>"``; a variant of another shape is taken as the pool."""
    info = e.rows[0].info
    parts = e.variant.split("/") if e.variant else []
    three = len(parts) == 3
    pool = str(info.get("pool", parts[0] if three else e.variant))
    sim_raw = info.get("similarity", parts[1] if three else "")
    sim = "—" if sim_raw in (None, "", "None") else str(sim_raw)  # remaining-only: no similarity
    epochs = str(info.get("epochs", parts[2] if three else ""))
    m = re.fullmatch(r"e(?:pochs?)?(\d+)", epochs)
    return pool, sim, m.group(1) if m else epochs


def _epoch_key(ep: str) -> tuple[int, str]:
    return (int(ep), "") if ep.isdigit() else (1 << 30, ep)


_STEP_ORDER = {s: i for i, s in enumerate(STEPS)}


def _entry_order(e: _Entry) -> tuple[Any, ...]:
    """Original, gold, unlearn by method, heal by method / pool / similarity / epochs."""
    if e.step == "heal":
        pool, sim, ep = _heal_params(e)
        return (_STEP_ORDER[e.step], e.method, pool, sim, _epoch_key(ep), e.variant)
    return (_STEP_ORDER[e.step], e.method, e.variant)


def _group(rows: list[_Row]) -> dict[str, list[_Group]]:
    by: dict[tuple[str, int], dict[tuple[str, str, str], list[_Row]]] = {}
    for r in rows:
        by.setdefault((r.scenario, r.step_index), {}).setdefault(
            (r.step, r.method, r.variant), []
        ).append(r)
    out: dict[str, list[_Group]] = {}
    for (scn, idx), models in sorted(by.items()):
        entries = [
            _Entry(step, method, variant, tuple(sorted(rs, key=lambda r: r.seed)))
            for (step, method, variant), rs in models.items()
        ]
        out.setdefault(scn, []).append(_Group(scn, idx, sorted(entries, key=_entry_order)))
    return out


def _taus(entries: Iterable[_Entry]) -> list[tuple[float, str]]:
    """The audited τ (sorted) with their key prefix, from ``r_tau@<tau>/mean`` keys."""
    found: dict[float, str] = {}
    for e in entries:
        for r in e.rows:
            for k in r.metrics:
                m = _TAU_MEAN.match(k)
                if m:
                    try:
                        found.setdefault(float(m.group(1)), f"r_tau@{m.group(1)}")
                    except ValueError as err:
                        raise DataFormatError(f"{e.label}: bad τ in metric key {k!r}") from err
    return sorted(found.items())


# ------------------------------------------------------------------------------ document model


@dataclass(frozen=True)
class Cell:
    """A table cell: its text and the footnote reasons attached to it."""

    text: str
    notes: tuple[str, ...] = ()
    numeric: bool = True


@dataclass
class _Table:
    headers: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)  # CSS class per row (model kind)

    def add(self, cells: list[Cell], kind: str = "") -> None:
        self.rows.append(cells)
        self.kinds.append(kind)


@dataclass(frozen=True)
class _Heading:
    level: int
    text: str
    anchor: str


@dataclass(frozen=True)
class _Para:
    text: str


@dataclass(frozen=True)
class _Figure:
    name: str
    data: bytes
    alt: str


_Block = _Heading | _Para | _Table | _Figure


def _label_cell(text: str) -> Cell:
    return Cell(text, numeric=False)


def _fmt(x: float, digits: int) -> str:
    return f"{x:.{digits}f}"


def _cell(s: Stat, digits: int, *, median: bool = False, suffix: str = "") -> Cell:
    """``mean ± std`` (or the median) of ``s``; "—" with the reasons when there is no number."""
    if s.n == 0:
        return Cell("—", s.reasons or (NOT_RECORDED,))
    if median:
        text = _fmt(s.median, digits) + suffix  # type: ignore[arg-type]
    else:
        text = _fmt(s.mean, digits) + suffix  # type: ignore[arg-type]
        if s.std is not None:
            text += f" ± {_fmt(s.std, digits)}"
    notes: tuple[str, ...] = ()
    if s.n < s.total:
        notes = (f"number on {s.n} of {s.total} seeds; the others: {'; '.join(s.reasons)}",)
    return Cell(text, notes)


def _time_cell(s: Stat) -> Cell:
    if s.n == 0 or s.median is None:
        return _cell(s, 2, median=True)
    digits = 3 if s.median < 1 else (2 if s.median < 100 else 0)
    return _cell(s, digits, median=True)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


class _Builder:
    """Collects blocks and writes figures into ``fig_dir``."""

    def __init__(self, fig_dir: Path, colors: dict[str, str], table_taus: Sequence[float] | None):
        self.fig_dir = fig_dir
        self.colors = colors
        self.table_taus = table_taus
        self.blocks: list[_Block] = []
        self.images: list[str] = []
        self._anchors: dict[str, int] = {}

    def heading(self, level: int, text: str, scope: str = "") -> None:
        base = _slug(f"{scope} {text}")
        n = self._anchors.get(base, 0)
        self._anchors[base] = n + 1
        self.blocks.append(_Heading(level, text, base if n == 0 else f"{base}-{n}"))

    def para(self, text: str) -> None:
        self.blocks.append(_Para(text))

    def table(self, t: _Table) -> None:
        if t.rows:
            self.blocks.append(t)

    def figure(self, fig: Any, stem: str, alt: str) -> None:
        name = f"{len(self.images) + 1:02d}-{_slug(stem)}.png"
        data = _plots.save_png(fig, self.fig_dir / name)
        self.images.append(name)
        self.blocks.append(_Figure(name, data, alt))

    def color(self, e: _Entry) -> str:
        if e.step == "gold":
            return _plots.GOLD_COLOR
        if e.step == "original":
            return _plots.ORIGINAL_COLOR
        return self.colors[e.label if e.step == "unlearn" else e.method]

    def series(self, e: _Entry, stats: Sequence[Stat]) -> _plots.Series:
        return _plots.Series(
            label=e.label,
            color=self.color(e),
            mean=[s.mean if s.n else float("nan") for s in stats],
            std=[s.std if s.std is not None else 0.0 for s in stats],
            kind="method" if e.step == "unlearn" else e.step,
        )


# ------------------------------------------------------------------------------ sections

_QUALITY = report_columns()


def _speed_cell(e: _Entry, gold: _Entry | None) -> Cell:
    if e.step == "gold":
        return Cell("1.00× (ref.)")
    if e.step == "original":
        return Cell("n/a")
    s = e.speedup()
    if s.n:
        return _cell(s, 2, median=True, suffix="×")
    t, g = e.time(), gold.time() if gold is not None else None
    if g is not None and g.n and t.n and t.median:
        return Cell(
            f"{g.median / t.median:.2f}×",  # type: ignore[operator]
            ("speed-up computed as gold's median time / this median time",),
        )
    return Cell("—", s.reasons or (NOT_RECORDED,))


def _speed_value(e: _Entry, gold: _Entry | None) -> float | None:
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


def _metrics_section(b: _Builder, g: _Group, level: int, scope: str) -> None:
    models = g.models()
    if not models:
        return
    all_taus = _taus(models)
    if b.table_taus is not None:
        taus = [(t, k) for t, k in all_taus if any(math.isclose(t, w) for w in b.table_taus)]
    else:
        taus = _spread(all_taus, MAX_TABLE_TAUS)
    cols = list(_QUALITY) + [(f"r_τ@{t:g}", f"{k}/mean", 3) for t, k in taus]
    cols = [c for c in cols if any(e.has(c[1]) for e in models)]
    b.heading(level, SECTION_TITLES["metrics"], scope)
    t = _Table(["Method", "Seeds"] + [c[0] for c in cols] + ["Time (s)", "Speed-up vs gold"])
    for e in models:
        cells = [_label_cell(e.label), Cell(str(len(e.rows)))]
        cells += [
            Cell("1 (ref.)")
            if e.step == "gold" and key.startswith("r_tau@") and not e.stat(key).n
            else _cell(e.stat(key), d)
            for _, key, d in cols
        ]
        cells += [_time_cell(e.time()), _speed_cell(e, g.gold)]
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


def _matched_note(models: Sequence[_Entry]) -> str:
    """One sentence on matched forgetting: each method run with a ``stop_forget_acc`` target
    (the scenario's ``matched_forgetting``), whether it stopped by the rule on every seed, and
    its median number of steps."""
    parts, targets = [], []
    for e in models:
        if e.step != "unlearn":
            continue
        tg = [r.info.get("params", {}).get("stop_forget_acc") for r in e.rows]
        if not all(_is_num(t) and t >= 0 for t in tg):
            continue
        targets += tg
        stats = [r.info.get("stats") or {} for r in e.rows]
        hit = sum(bool(st.get("stopped_early")) for st in stats)
        steps = [st["steps"] for st in stats if _is_num(st.get("steps"))]
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


def _accuracy_section(b: _Builder, g: _Group, level: int, scope: str) -> None:
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
    fig = _plots.accuracy_vs_gold(series, [n for n, _ in panels])
    b.figure(fig, f"{scope}-accuracy", f"{scope}: accuracy of each method vs gold")
    b.para(
        "Bars: mean over seeds (error bar: std); the dashed line is gold's value. The value "
        "axis starts near the lowest bar, not at 0."
    )


def _residual_section(b: _Builder, g: _Group, level: int, scope: str) -> None:
    cands = [e for e in g.models() if e.step != "gold"]
    taus = _taus(cands)
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
        fig = _plots.residual_curves([t for t, _ in taus], [b.series(e, st) for e, st in curves])
        b.figure(fig, f"{scope}-residual", f"{scope}: r_τ vs τ per method")
    else:
        b.para("No method has a numeric r_τ at any τ (see the notes).")
    mean_t = _Table(["Method"] + [f"τ = {t:g}" for t, _ in taus])
    for e, st in curves:
        mean_t.add([_label_cell(e.label)] + [_cell(s, 3) for s in st], e.step)
    b.table(mean_t)
    if curves:
        b.para(
            "r_τ per τ, mean ± std over seeds; τ is the perturbation scale in pixel units "
            "(inputs in [0, 1]). Error bars in the figure: std over seeds."
        )
    if prev:
        b.heading(level + 1, SECTION_TITLES["prevalence"], scope)
        t = _Table(["Method"] + [f"τ = {t:g}" for t, _ in taus])
        for e, st in prev:
            t.add([_label_cell(e.label)] + [_cell(s, 3) for s in st], e.step)
        b.table(t)
        b.para(
            "Fraction of forget samples whose r_τ exceeds 1 (the model recognises them more "
            "often than gold does), mean ± std over seeds."
        )


def _per_class(e: _Entry) -> dict[str, Stat]:
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
            v = pc.get(c, _MISSING) if isinstance(pc, Mapping) else (pc or _MISSING)
            classes[c].append(v)
    return {c: aggregate(v, f"{e.label}: per-class accuracy of {c!r}") for c, v in classes.items()}


def _contamination_section(b: _Builder, g: _Group, level: int, scope: str) -> None:
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
    fig = _plots.contamination_heatmap([e.label for e, _ in others], classes, mat)
    b.figure(fig, f"{scope}-contamination", f"{scope}: per-class test accuracy minus gold's")
    t = _Table(["Method"] + classes)
    for (e, _), row in zip(others, mat, strict=True):
        t.add(
            [_label_cell(e.label)]
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
        s = _Table(["Method"] + [k[0] for k in keys])
        for e, _ in others:
            s.add([_label_cell(e.label)] + [_cell(e.stat(k), 2) for _, k in keys], e.step)
        b.table(s)
        b.para(
            "Contamination summary (DESIGN.md): mean accuracy damage vs gold on the classes "
            "nearest the request (class-centroid cosine in the original's penultimate layer) "
            "and on the rest."
        )


def _healing_section(b: _Builder, g: _Group, level: int, scope: str) -> None:
    heals = g.of("heal")
    if not heals:
        return
    unlearn = g.of("unlearn")
    gold = g.gold
    b.heading(level, SECTION_TITLES["healing"], scope)
    t = _Table(
        ["Healed method", "Pool", "Similarity", "Epochs", "Test before", "Test after",
         "Gold test", "Δ test", "Avg. Gap before", "Avg. Gap after"]
    )  # fmt: skip
    panels: dict[tuple[str, str], list[tuple[str, str, Stat]]] = {}
    befores: dict[str, _Entry | None] = {}
    for e in heals:
        pool, sim, ep = _heal_params(e)
        before = befores.setdefault(
            e.method,
            next((u for u in unlearn if u.method == e.method and not u.variant), None)
            or next((u for u in unlearn if u.method == e.method), None),
        )
        after = e.stat("acc/test")
        if before is not None:
            bt, bg = before.stat("acc/test"), _cell(before.stat("avg_gap"), 2)
            btc = _cell(bt, 2)
        else:
            why = (f"no unlearn row of method {e.method!r} in this step",)
            bt, btc, bg = None, Cell("—", why), Cell("—", why)
        if bt is not None and bt.n and after.n:
            delta = Cell(f"{after.mean - bt.mean:+.2f}")  # type: ignore[operator]
        else:
            delta = Cell("—", ("needs test accuracy before and after healing",))
        t.add(
            [_label_cell(e.method), _label_cell(pool), _label_cell(sim), Cell(ep or "—"),
             btc, _cell(after, 2),
             _cell(gold.stat("acc/test"), 2) if gold else Cell("—", ("no gold row",)),
             delta, bg, _cell(e.stat("avg_gap"), 2)],
            "heal",
        )  # fmt: skip
        panels.setdefault((e.method, pool), []).append((sim, ep, after))
    b.table(t)
    figs = []
    for (method, pool), items in panels.items():
        if not any(s.n for _, _, s in items):
            continue
        sims = sorted({s for s, _, _ in items})
        eps = sorted({ep for _, ep, _ in items}, key=_epoch_key)
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
            _plots.HealPanel(
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
        fig = _plots.healing_recovery(figs, _plots.EPOCH_COLORS)
        b.figure(fig, f"{scope}-healing", f"{scope}: test accuracy after healing")
    b.para(
        "Test accuracy (%) after healing, by the similarity that picked the healing samples and "
        "the number of fine-tuning epochs; dotted red: the unlearned model before healing; "
        "dashed: gold. Δ test = after − before (means over seeds)."
    )


def _cost_section(b: _Builder, g: _Group, level: int, scope: str) -> None:
    entries = [e for e in g.entries if e.time().n or e.step in ("unlearn", "heal")]
    if not any(e.time().n for e in entries):
        return
    b.heading(level, SECTION_TITLES["cost"], scope)
    t = _Table(["Method", "Step", "Seeds", "Median time (s)", "Speed-up vs gold"])
    for e in entries:
        t.add(
            [_label_cell(e.label), _label_cell(e.step), Cell(str(len(e.rows))),
             _time_cell(e.time()), _speed_cell(e, g.gold)],
            e.step,
        )  # fmt: skip
    b.table(t)
    shown = [e for e in entries if e.time().n]
    fig = _plots.cost_bars(
        [e.label for e in shown],
        [b.color(e) for e in shown],
        [e.time().median for e in shown],
        [_speed_value(e, g.gold) if e.step != "gold" else None for e in shown],
    )
    b.figure(fig, f"{scope}-cost", f"{scope}: median wall time per method")
    b.para(
        "Wall time of each step, median over seeds; speed-up = gold retrain time / method time "
        "(the original's time is its training)."
    )


def _summary_text(v: Any) -> tuple[str, tuple[str, ...]]:
    if is_skipped(v):
        return "—", (v[len(SKIP) :].strip(),)
    if _is_num(v):
        return (f"{v:.2f}" if isinstance(v, float | np.floating) else str(v)), ()
    return str(v), ()


def _ledger_section(
    b: _Builder, scenario: str, groups: list[_Group], ledger: list[Mapping[str, Any]], level: int
) -> None:
    entries = sorted(
        (e for e in ledger if e["scenario"] == scenario),
        key=lambda e: (e["seed"], e["step_index"], str(e["method"])),
    )
    steps = {e["step_index"] for e in entries} | {g.step_index for g in groups}
    if len(steps) < 2:
        return
    if entries:
        b.heading(level, SECTION_TITLES["ledger"], scenario)
        t = _Table(
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
                [Cell(str(e["seed"])), Cell(str(e["step_index"])), _label_cell(str(e["method"])),
                 _label_cell(short[0]), Cell(str(e.get("request_size", "—"))),
                 _label_cell(str(e.get("request_source") or "—")), _label_cell(short[1]),
                 _label_cell(str(e.get("parent_version") or "—")[:12]),
                 Cell(", ".join(parts) or "—", tuple(notes), numeric=False)],
                "",
            )  # fmt: skip
        b.table(t)
        b.para(
            "Each request produces a new model version from its parent: request → method → "
            "model version → audit summary (hashes shortened to 12 characters)."
        )
    _sequence_plot(b, scenario, groups, level)


def _sequence_plot(b: _Builder, scenario: str, groups: list[_Group], level: int) -> None:
    steps = [g.step_index for g in groups]
    labels: dict[str, _Entry] = {}
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
        _plots.sequence_lines(steps, panels),
        f"{scenario}-sequence",
        f"{scenario}: metrics over the request sequence",
    )
    b.para("Each point is a model version after that many requests (mean ± std over seeds).")


def _scenario_info(groups: list[_Group]) -> str:
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


def _overview(b: _Builder, grouped: dict[str, list[_Group]]) -> None:
    b.heading(2, SECTION_TITLES["overview"])
    t = _Table(["Scenario", "Requests", "Methods", "Seeds", "Rows"])
    for scn, groups in grouped.items():
        methods = sorted({e.method for g in groups for e in g.of("unlearn")})
        seeds = sorted({r.seed for g in groups for e in g.entries for r in e.rows})
        nrows = sum(len(e.rows) for g in groups for e in g.entries)
        t.add(
            [_label_cell(scn), Cell(str(len(groups))), _label_cell(", ".join(methods) or "—"),
             Cell(", ".join(map(str, seeds))), Cell(str(nrows))]
        )  # fmt: skip
    b.table(t)


# ------------------------------------------------------------------------------ rendering


class _Notes:
    """Footnote numbers, assigned in order of first reference (same order in md and html)."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def ref(self, reason: str) -> int:
        return self.ids.setdefault(reason, len(self.ids) + 1)


def _md_text(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def _render_md(blocks: list[_Block], title: str, generated: str) -> str:
    notes = _Notes()
    out = [f"# {title}", ""]
    if generated:
        out += [generated, ""]
    for bl in blocks:
        if isinstance(bl, _Heading):
            out += ["#" * bl.level + " " + bl.text, ""]
        elif isinstance(bl, _Para):
            out += [bl.text, ""]
        elif isinstance(bl, _Figure):
            out += [f"![{_md_text(bl.alt)}]({FIGURES_DIR}/{bl.name})", ""]
        else:
            out.append("| " + " | ".join(_md_text(h) for h in bl.headers) + " |")
            align = [":---" if not c.numeric else "---:" for c in bl.rows[0]]
            out.append("|" + "|".join(align) + "|")
            for row in bl.rows:
                cells = [
                    _md_text(c.text) + "".join(f"[^{notes.ref(n)}]" for n in c.notes) for c in row
                ]
                out.append("| " + " | ".join(cells) + " |")
            out.append("")
    if notes.ids:
        out += [f"## {SECTION_TITLES['notes']}", ""]
        out += [f"[^{i}]: {_md_text(r)}" for r, i in notes.ids.items()]
        out.append("")
    return "\n".join(out)


_CSS = """
body{font-family:"DejaVu Sans",system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
margin:0;background:#eef0f3;color:#1f2328;line-height:1.45}
main{max-width:1240px;margin:0 auto;padding:20px 28px 40px;background:#fff;min-height:100vh}
h1{font-size:26px;border-bottom:3px solid #1f2328;padding-bottom:6px;margin-bottom:4px}
h2{font-size:21px;margin-top:38px;border-bottom:1px solid #c8ccd1;padding-bottom:4px}
h3{font-size:17px;margin-top:28px;color:#24292f}
h4{font-size:15px;margin-top:22px;color:#3a3f45}
p{margin:6px 0 12px;max-width:1000px}
p.meta{color:#666;font-size:13px;margin-top:0}
p.note{color:#555;font-size:13px}
nav{font-size:14px;margin:8px 0 4px}
nav a{margin-right:14px;color:#0b5cad;text-decoration:none}
.wrap{overflow-x:auto;margin:8px 0 10px}
table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #d7dbe0;padding:4px 7px}
td{white-space:nowrap}
th{background:#f2f4f7;font-weight:600;text-align:center;vertical-align:bottom}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.txt{text-align:left}
td.long{white-space:normal;min-width:360px}
tbody tr:nth-child(even) td{background:#fafbfc}
tr.gold td{background:#fff4cc !important;font-weight:600}
tr.original td{color:#555;font-style:italic}
tr.heal td{background:#f3f9f1}
.skip{color:#8a8f96;cursor:help}
sup{font-size:10px;color:#0b5cad}
figure{margin:8px 0 14px}
figure img{max-width:100%;height:auto;border:1px solid #e4e7eb}
figcaption{font-size:12px;color:#666}
ol.notes{font-size:12px;color:#444}
"""


def _render_html(blocks: list[_Block], title: str, generated: str) -> str:
    notes = _Notes()
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{e(title)}</h1>",
    ]
    if generated:
        out.append(f'<p class="meta">{e(generated)}</p>')
    scenarios = [bl for bl in blocks if isinstance(bl, _Heading) and bl.level == 2]
    if scenarios:
        links = "".join(f'<a href="#{e(h.anchor)}">{e(h.text)}</a>' for h in scenarios)
        out.append(f"<nav>{links}</nav>")
    for bl in blocks:
        if isinstance(bl, _Heading):
            out.append(f'<h{bl.level} id="{e(bl.anchor)}">{e(bl.text)}</h{bl.level}>')
        elif isinstance(bl, _Para):
            out.append(f'<p class="note">{e(bl.text)}</p>')
        elif isinstance(bl, _Figure):
            data = base64.b64encode(bl.data).decode("ascii")
            out.append(
                f'<figure><img alt="{e(bl.alt)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{e(bl.alt)}</figcaption></figure>"
            )
        else:
            rows = ["<tr>" + "".join(f"<th>{e(h)}</th>" for h in bl.headers) + "</tr>"]
            for kind, row in zip(bl.kinds, bl.rows, strict=True):
                tds = []
                for c in row:
                    cls = "num" if c.numeric else ("txt long" if len(c.text) > 60 else "txt")
                    if c.notes:
                        refs = "".join(
                            f'<sup><a href="#note-{notes.ref(n)}">{notes.ref(n)}</a></sup>'
                            for n in c.notes
                        )
                        tip = e(" | ".join(c.notes))
                        text = f'<span class="skip" title="{tip}">{e(c.text)}</span>{refs}'
                        if c.text != "—":
                            text = f'<span title="{tip}">{e(c.text)}</span>{refs}'
                    else:
                        text = e(c.text)
                    tds.append(f'<td class="{cls}">{text}</td>')
                cls_attr = f' class="{e(kind)}"' if kind else ""
                rows.append(f"<tr{cls_attr}>" + "".join(tds) + "</tr>")
            out.append('<div class="wrap"><table>' + "".join(rows) + "</table></div>")
    if notes.ids:
        out.append(f'<h2 id="notes">{e(SECTION_TITLES["notes"])}</h2><ol class="notes">')
        out += [f'<li id="note-{i}">{e(r)}</li>' for r, i in notes.ids.items()]
        out.append("</ol>")
    out.append("</main></body></html>")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------ public API


def build_report(
    rows: Iterable[Mapping[str, Any]],
    ledger: Iterable[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    title: str = "obliviate report",
    taus: Sequence[float] | None = None,
    generated: str | None = None,
) -> ReportPaths:
    """Write ``report.md``, ``report.html`` and ``figures/*.png`` under ``out_dir``.

    ``rows`` are results-store rows: ``scenario``, ``step`` (original / gold / unlearn / heal),
    ``step_index``, ``method``, ``variant`` (healing: ``"pool/similarity/e<epochs>"``), ``seed``,
    ``metrics`` (numbers or ``"skipped: <reason>"``; ``r_tau@<τ>/mean`` and
    ``r_tau@<τ>/frac_gt1`` per τ; ``per_class/test`` a class → accuracy mapping), ``timings``,
    ``info``. ``ledger`` entries carry ``scenario``, ``seed``, ``step_index``, ``method`` and
    optionally ``request_hash``, ``request_size``, ``request_source``, ``model_version``,
    ``parent_version``, ``metrics_summary``. ``taus`` limits the r_τ columns of the metric
    tables (the curves keep every τ). ``generated`` is the line under the title (default: the
    current UTC time; ``""`` for none, e.g. for reproducible output).

    Malformed rows (a missing key, an unknown step, a non-integer seed, duplicates of one
    scenario/step_index/step/method/variant/seed, a metric that is neither a number nor a
    skip reason) raise :class:`DataFormatError` naming the row. ``out_dir/figures`` belongs to
    the report and is replaced whole (atomically); the two pages are written atomically.
    """
    checked = _check_rows(rows)
    entries_ledger = _check_ledger(ledger)
    if taus is not None and not all(isinstance(t, int | float) for t in taus):
        raise ConfigError(f"taus must be numbers, got {list(taus)!r}")
    out = Path(out_dir)
    grouped = _group(checked)
    entries = [e for gs in grouped.values() for g in gs for e in g.entries]
    labels = sorted({e.label for e in entries if e.step == "unlearn"})
    labels += sorted({e.method for e in entries if e.step == "heal"} - set(labels))
    colors = _plots.palette(labels)  # a heal entry takes its healed method's colour
    if generated is None:
        now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        generated = f"generated {now}"
    with atomic_dir(out / FIGURES_DIR) as tmp:
        b = _Builder(tmp, colors, taus)
        _overview(b, grouped)
        for scn, groups in grouped.items():
            b.heading(2, f"Scenario: {scn}")
            info = _scenario_info(groups)
            if info:
                b.para(info + ".")
            seq = len(groups) > 1
            for g in groups:
                scope = f"{scn} step {g.step_index}" if seq else scn
                level = 4 if seq else 3
                if seq:
                    sizes = {
                        str(r.info["request_size"])
                        for e in g.entries
                        for r in e.rows
                        if "request_size" in r.info
                    }
                    size = f" (request of {', '.join(sorted(sizes))} samples)" if sizes else ""
                    b.heading(3, f"Request step {g.step_index}{size}", scn)
                _metrics_section(b, g, level, scope)
                _accuracy_section(b, g, level, scope)
                _residual_section(b, g, level, scope)
                _contamination_section(b, g, level, scope)
                _healing_section(b, g, level, scope)
                _cost_section(b, g, level, scope)
            _ledger_section(b, scn, groups, entries_ledger, 3)
    md_path, html_path = out / "report.md", out / "report.html"
    atomic_write_bytes(md_path, _render_md(b.blocks, title, generated).encode("utf-8"))
    atomic_write_bytes(html_path, _render_html(b.blocks, title, generated).encode("utf-8"))
    _publishable(out / FIGURES_DIR, md_path, html_path)
    return ReportPaths(md_path, html_path, [out / FIGURES_DIR / n for n in b.images])


def _publishable(folder: Path, *files: Path) -> None:
    """Give the report the permissions of an ordinary file (the atomic writers create 0600 /
    0700 temporaries) so the page can be served or shared, honouring the umask."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for f in (*files, *folder.iterdir()):
        f.chmod(0o666 & ~umask)


def report_from_store(
    db_path: str | Path,
    out_dir: str | Path,
    scenario: str | None = None,
    *,
    title: str | None = None,
) -> ReportPaths:
    """Read rows and ledger from the results store at ``db_path`` and :func:`build_report`.

    Raises :class:`ConfigError` when the store file does not exist or holds no rows (for
    ``scenario``, when given).
    """
    path = Path(db_path)
    if not path.is_file():
        raise ConfigError(f"results store {str(path)!r} does not exist")
    from obliviate.scenarios.store import ResultsStore

    store = ResultsStore(path)
    try:
        rows = list(store.rows(scenario))
        ledger = list(store.ledger(scenario))
    finally:
        close = getattr(store, "close", None)
        if callable(close):
            close()
    if not rows:
        which = f" for scenario {scenario!r}" if scenario else ""
        raise ConfigError(f"results store {str(path)!r} holds no rows{which}")
    return build_report(rows, ledger, out_dir, title=title or f"obliviate report: {path.name}")
