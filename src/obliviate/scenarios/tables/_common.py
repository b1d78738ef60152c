"""Helpers shared by the suite table printers: intervals over seeds and row look-ups."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from typing import Any

from rich.table import Table
from scipy import stats

Row = Mapping[str, Any]


def interval(vals: Iterable[float | None]) -> tuple[float, float, int]:
    """(mean, half-width of the 95 % t-interval, n) over the finite values (DESIGN.md
    "Intervals"); the half-width is NaN for one value, the mean NaN for none."""
    v = [float(x) for x in vals if isinstance(x, int | float) and math.isfinite(x)]
    if not v:
        return math.nan, math.nan, 0
    m = statistics.fmean(v)
    if len(v) < 2:
        return m, math.nan, 1
    return (
        m,
        float(stats.t.ppf(0.975, len(v) - 1) * statistics.stdev(v) / math.sqrt(len(v))),
        len(v),
    )


def fmt_interval(
    vals: Iterable[float | None], signed: bool = True, total: int | None = None
) -> str:
    """``mean ± half`` (``mean`` alone for one value, ``—`` for none); ``(n=k)`` when fewer than
    ``total`` values were finite."""
    m, h, n = interval(vals)
    if n == 0:
        return "—"
    s = f"{m:+.2f}" if signed else f"{m:.2f}"
    s += "" if math.isnan(h) else f" ± {h:.2f}"
    return s + (f" (n={n})" if total is not None and n < total else "")


def fmt_mean_std(vals: Iterable[float | None], digits: int = 2) -> str:
    """``mean ± std`` over the finite values (the mean alone for one, ``—`` for none)."""
    v = [float(x) for x in vals if isinstance(x, int | float) and math.isfinite(x)]
    if not v:
        return "—"
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    return f"{statistics.fmean(v):.{digits}f} ± {statistics.stdev(v):.{digits}f}"


def metric(row: Row | None, key: str) -> float | None:
    """A numeric metric of a row (None when absent, skipped or the row is missing)."""
    if row is None:
        return None
    v = row["metrics"].get(key)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def index(rows: Iterable[Row]) -> dict[tuple[str, int, int, str, str, str], Row]:
    """Rows by (scenario, seed, step_index, step, method, variant)."""
    keys = ("scenario", "seed", "step_index", "step", "method", "variant")
    return {tuple(r[k] for k in keys): r for r in rows}  # type: ignore[misc]


def table(title: str, columns: Iterable[str]) -> Table:
    """A table with right-justified ``columns``."""
    t = Table(title=title)
    for col in columns:
        t.add_column(col, justify="right")
    return t


def sub(a: float | None, b: float | None) -> float | None:
    """``a − b``, or None when either is missing."""
    return None if a is None or b is None else a - b


def paired(a: Mapping[int, float | None], b: Mapping[int, float | None]) -> list[float]:
    """Per-seed differences ``a − b`` over the seeds where both are numbers."""
    return [x - y for k, x in a.items() if x is not None and (y := b.get(k)) is not None]


def ordered(values: Iterable[Any]) -> list[Any]:
    """Distinct values in first-seen order."""
    return list(dict.fromkeys(values))
