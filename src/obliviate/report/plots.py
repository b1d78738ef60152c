"""The report's figures (issue #7), drawn with matplotlib's object API on the Agg canvas.

No pyplot: every figure is a fresh :class:`matplotlib.figure.Figure` that no global registry
holds, so nothing leaks between calls and nothing changes the caller's backend. Each function
takes plain numbers (already aggregated over seeds by :mod:`obliviate.report.aggregate`) and
returns a figure; :func:`save_png` writes it without a timestamp or software tag, so the same
numbers give byte-identical PNGs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

GOLD_COLOR = "#222222"
ORIGINAL_COLOR = "#9a9a9a"
BEFORE_COLOR = "#d62728"
_DPI = 110


@dataclass(frozen=True)
class Series:
    """One model's values across a figure's x positions: means, stds (NaN where absent)."""

    label: str
    color: str
    mean: Sequence[float]
    std: Sequence[float]
    kind: str = "method"  # "original" | "gold" | "method" | "heal"


def _new(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: str | Path) -> bytes:
    """Write ``fig`` as PNG at ``path`` (no timestamp, no software tag); return the bytes."""
    path = Path(path)
    fig.savefig(path, format="png", dpi=_DPI, metadata={"Software": None})
    fig.clear()
    return path.read_bytes()


def _nan(v: float | None) -> float:
    return float("nan") if v is None else float(v)


def _limits(lo: float, hi: float) -> tuple[float, float]:
    """An axis range that shows differences between close accuracies (bars do not start at 0):
    from a round number below ``lo`` to a margin above ``hi`` (pass values ± their error)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return (0.0, 1.0)
    span = max(hi - lo, 1.0)
    low = max(0.0, math.floor((lo - 0.3 * span) / 5.0) * 5.0)
    return (low, max(hi + 0.08 * span, low + 1.0))


def accuracy_vs_gold(series: Sequence[Series], panels: Sequence[str]) -> Figure:
    """One panel per accuracy (``mean[i]`` belongs to ``panels[i]``), a horizontal bar per model.

    Gold's bar is hatched and its value is a dashed line down the panel, so each method's bar is
    read against it. The value axis starts near the lowest bar (a round number), not at 0.
    """
    n = len(series)
    fig = _new(min(12.0, 2.4 + 3.2 * len(panels)), 1.1 + 0.36 * n)
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    gold = next((s for s in series if s.kind == "gold"), None)
    y = np.arange(n)
    for p, (ax, name) in enumerate(zip(axes, panels, strict=True)):
        means = np.array([_nan(s.mean[p]) for s in series])
        stds = np.nan_to_num(np.array([_nan(s.std[p]) for s in series]))
        bars = ax.barh(
            y,
            np.nan_to_num(means),
            xerr=stds if stds.any() else None,
            color=[s.color for s in series],
            height=0.7,
            error_kw={"capsize": 2, "lw": 1},
        )
        for s, bar in zip(series, bars, strict=True):
            if s.kind == "gold":
                bar.set_hatch("//")
                bar.set_edgecolor("white")
        ok = np.isfinite(means)
        if ok.any():
            lo, hi = _limits(float((means - stds)[ok].min()), float((means + stds)[ok].max()))
            ax.set_xlim(lo, hi + 0.22 * (hi - lo))  # room for the value labels
        if gold is not None and math.isfinite(_nan(gold.mean[p])):
            ax.axvline(_nan(gold.mean[p]), color=GOLD_COLOR, ls="--", lw=1, zorder=3)
        for yi, m, e in zip(y, means, stds, strict=True):
            x0 = ax.get_xlim()[0]
            ax.annotate(
                f"{m:.1f}" if math.isfinite(m) else "—",
                (m + e if math.isfinite(m) else x0, yi),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize=7,
            )
        ax.set_title(f"{name} accuracy (%)", fontsize=10)
        ax.tick_params(labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, [s.label for s in series])
    axes[0].invert_yaxis()
    return fig


def _mean_line(ax: Any, x: np.ndarray, s: Series, **style: Any) -> None:
    """Plot series ``s`` (mean ± std over seeds) against ``x``, skipping missing points."""
    m = np.array([_nan(v) for v in s.mean])
    e = np.nan_to_num(np.array([_nan(v) for v in s.std]))
    ok = np.isfinite(m)
    if ok.any():
        ax.errorbar(
            x[ok],
            m[ok],
            yerr=e[ok] if e[ok].any() else None,
            label=s.label,
            color=s.color,
            marker="o",
            ms=4,
            capsize=3,
            **style,
        )


def residual_curves(taus: Sequence[float], series: Sequence[Series]) -> Figure:
    """r_τ against τ, one line per model (error bars: std over seeds); r = 1 is gold."""
    fig = _new(6.8, 3.8)
    ax = fig.subplots()
    t = np.asarray(taus, dtype=float)
    for s in series:
        _mean_line(ax, t, s, lw=1.5)
    ax.axhline(1.0, color=GOLD_COLOR, ls="--", lw=1, label="gold (r = 1)")
    ax.set_xlabel("τ (perturbation scale, pixels in [0, 1])")
    ax.set_ylabel("r_τ = hits(unlearned) / hits(gold)")
    finite = [float(v) for s in series for v in s.mean if v is not None and math.isfinite(float(v))]
    lo = min([1.0, *finite])
    ax.set_ylim(bottom=max(0.0, lo - 0.15 * max(max([1.0, *finite]) - lo, 0.2)))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig


def contamination_heatmap(
    rows: Sequence[str], classes: Sequence[str], matrix: np.ndarray
) -> Figure:
    """Models × classes heatmap of per-class test accuracy minus gold's (pp; red = damage).

    The colour scale spans the 90th percentile of |Δ| (at least 1 pp), not the maximum: a
    forgotten whole class (Δ ≈ +95 pp for models that still know it) would otherwise wash out
    the few-pp damage to the other classes. Cells beyond it saturate; every cell prints its value.
    """
    data = np.asarray(matrix, dtype=float)
    finite = np.abs(data[np.isfinite(data)])
    lim = max(1.0, float(np.percentile(finite, 90)) if finite.size else 1.0)
    fig = _new(max(5.5, 1.6 + 0.62 * len(classes)), max(2.2, 1.2 + 0.42 * len(rows)))
    ax = fig.subplots()
    cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="#dddddd")
    im = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=-lim, vmax=lim, aspect="auto")
    long = max((len(c) for c in classes), default=0) > 3
    ax.set_xticks(
        np.arange(len(classes)),
        list(classes),
        rotation=45 if long else 0,
        ha="right" if long else "center",
        fontsize=8,
    )
    ax.set_yticks(np.arange(len(rows)), list(rows), fontsize=8)
    if len(classes) <= 25:
        for (i, j), v in np.ndenumerate(data):
            if math.isfinite(v):
                ax.text(
                    j,
                    i,
                    f"{v:+.1f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if abs(v) > 0.6 * lim else "black",
                )
    ax.set_xlabel("class")
    fig.colorbar(im, ax=ax, label="Δ vs gold (pp)", shrink=0.9, extend="both")
    return fig


@dataclass(frozen=True)
class HealPanel:
    """One healed method (and pool): test accuracy after healing per (similarity, epochs)."""

    title: str
    similarities: Sequence[str]
    epochs: Sequence[str]
    after_mean: np.ndarray  # [len(epochs), len(similarities)], NaN where not run
    after_std: np.ndarray
    before: float | None
    gold: float | None


def healing_recovery(panels: Sequence[HealPanel], colors: Sequence[str]) -> Figure:
    """Grouped bars: x = similarity, one bar per epoch count; lines at gold and before healing."""
    n = len(panels)
    cols = min(n, 3)
    nrows = math.ceil(n / cols)
    width = max(4.2, 0.8 + 0.75 * max(len(p.similarities) * max(len(p.epochs), 1) for p in panels))
    fig = _new(width * cols, 3.4 * nrows)
    axes = fig.subplots(nrows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    for ax, p in zip(axes, panels, strict=False):
        k = max(len(p.epochs), 1)
        w = 0.8 / k
        x = np.arange(len(p.similarities))
        vals = [p.after_mean[np.isfinite(p.after_mean)]]
        for e, ep in enumerate(p.epochs):
            m = p.after_mean[e]
            ax.bar(
                x - 0.4 + w * (e + 0.5),
                np.nan_to_num(m),
                w * 0.92,
                yerr=np.nan_to_num(p.after_std[e]),
                capsize=2,
                color=colors[e % len(colors)],
                label=f"{ep} epoch{'s' if ep not in ('1', '') else ''}",
            )
        if p.gold is not None:
            ax.axhline(p.gold, color=GOLD_COLOR, ls="--", lw=1.2, label="gold")
            vals.append(np.array([p.gold]))
        if p.before is not None:
            ax.axhline(p.before, color=BEFORE_COLOR, ls=":", lw=1.5, label="before healing")
            vals.append(np.array([p.before]))
        top = p.after_mean + p.after_std
        vals.append(top[np.isfinite(top)])
        allv = np.concatenate(vals)
        if allv.size:
            lo, hi = _limits(float(allv.min()), float(allv.max()))
            ax.set_ylim(lo, hi + 0.25 * (hi - lo))  # room for the legend
        ax.set_xticks(x, list(p.similarities), rotation=20, ha="right", fontsize=8)
        ax.set_ylabel("test accuracy (%)", fontsize=8)
        ax.set_title(p.title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncol=len(labels), fontsize=8)
    return fig


def cost_bars(
    labels: Sequence[str],
    colors: Sequence[str],
    seconds: Sequence[float | None],
    speedups: Sequence[float | None],
) -> Figure:
    """Horizontal bars of median wall time (log scale when times span > 30×), speed-up noted."""
    t = np.array([_nan(v) for v in seconds])
    fig = _new(7.0, max(2.0, 0.9 + 0.36 * len(labels)))
    ax = fig.subplots()
    y = np.arange(len(labels))
    ax.barh(y, np.nan_to_num(t), color=list(colors), height=0.65)
    ax.set_yticks(y, list(labels), fontsize=8)
    ax.invert_yaxis()
    finite = t[np.isfinite(t) & (t > 0)]
    if finite.size and finite.max() / finite.min() > 30:
        ax.set_xscale("log")
    xmax = float(finite.max()) if finite.size else 1.0
    ax.set_xlim(right=xmax * (6.0 if ax.get_xscale() == "log" else 1.55))
    for yi, (ti, su) in enumerate(zip(t, speedups, strict=True)):
        if math.isfinite(ti):
            text = f"{ti:.2f} s" + (f"  ({su:.1f}× vs gold)" if su is not None else "")
            ax.annotate(
                text,
                (ti, yi),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize=7,
            )
    ax.set_xlabel("median wall time (s)")
    ax.grid(axis="x", alpha=0.3)
    return fig


def sequence_lines(steps: Sequence[int], panels: Sequence[tuple[str, Sequence[Series]]]) -> Figure:
    """One panel per metric: a line per model over the request sequence's steps."""
    fig = _new(5.2 * len(panels), 3.4)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    x = np.asarray(steps)
    for ax, (name, series) in zip(axes, panels, strict=True):
        for s in series:
            _mean_line(ax, x, s, ls="--" if s.kind == "gold" else "-")
        ax.set_xticks(x, [str(int(v)) for v in x])
        ax.set_xlabel("request (step index)")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


#: bar colours for 1, 2, 3, … healing epochs (light → dark)
EPOCH_COLORS = ("#9ecae1", "#4292c6", "#08519c", "#08306b", "#6baed6")


def palette(labels: Sequence[str]) -> dict[str, str]:
    """A fixed colour per label (tab10, then tab20), in the order given; same labels → same map."""
    base = [to_hex(c) for c in matplotlib.colormaps["tab10"].colors]
    base += [to_hex(c) for c in matplotlib.colormaps["tab20"].colors[1::2]]
    base = [c for c in base if c not in ("#7f7f7f", "#c7c7c7")]  # greys are the original's
    return {lab: base[i % len(base)] for i, lab in enumerate(labels)}
