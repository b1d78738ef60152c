"""Aggregation over seeds: the one implementation behind the report and the results store.

DESIGN.md "Cost": quality metrics are mean ± std over seeds, timings are medians. The standard
deviation is the *sample* one (``ddof=1``, the unbiased estimate of the seeds' spread); it is
undefined for a single number, so with one seed ``std`` is ``None`` and every printer (the
report's tables, :func:`obliviate.scenarios.store.summary_table`) shows the mean alone, through
:func:`mean_std_text`. A metric recorded as ``"skipped: <reason>"``, a missing value or a
non-finite number is not averaged: its reason is kept (:attr:`Stat.reasons`); any other value is
an error naming the metric.

Rows are results-store rows (the format at the top of :mod:`obliviate.scenarios.store`): plain
dicts with ``scenario``, ``step``, ``step_index``, ``method``, ``variant``, ``seed``,
``metrics``, ``timings``, ``info``. A *failed* row (``metrics`` = ``{"failed": "<reason>"}``, a
method that diverged: :func:`failure`) has no numbers: :func:`summarize` keeps its reason as
every metric's and never averages it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from obliviate.audit import SKIP, is_skipped
from obliviate.errors import DataFormatError

#: The steps of a results-store row, in the order tables list them.
STEPS: tuple[str, ...] = ("original", "gold", "unlearn", "heal")
#: The reason kept for a seed that has no value at all.
NOT_RECORDED = "not recorded"
#: Stands for a metric key absent from a row (distinct from a recorded ``None``).
MISSING: Any = object()
#: The only metric of a failed row: the one-line reason (e.g. which method diverged where).
FAILED = "failed"


def failure(row: Any) -> str | None:
    """The reason of a failed row (``metrics`` = ``{"failed": "<reason>"}``; a mapping or an
    object with ``metrics``), else None."""
    metrics = row.get("metrics") if isinstance(row, Mapping) else getattr(row, "metrics", None)
    if isinstance(metrics, Mapping) and FAILED in metrics:
        return str(metrics[FAILED])
    return None


def is_int(v: Any) -> bool:
    """True for an integer (numpy's included), False for a bool."""
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def is_num(v: Any) -> bool:
    """True for a finite real number (numpy's included), False for a bool."""
    return (
        isinstance(v, int | float | np.integer | np.floating)
        and not isinstance(v, bool)
        and math.isfinite(float(v))
    )


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
    """Mean, sample std (ddof=1; ``None`` for fewer than two numbers) and median of the numbers
    in ``values``.

    ``"skipped: <reason>"`` strings, missing values and non-finite numbers are not averaged;
    their reasons are kept. Any other value raises :class:`DataFormatError` naming ``where``.
    """
    nums: list[float] = []
    reasons: list[str] = []
    for v in values:
        if v is MISSING or v is None:
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


def mean_std_text(mean: float, std: float | None, digits: int, suffix: str = "") -> str:
    """``"<mean><suffix> ± <std>"`` with ``digits`` decimals; the mean alone when ``std`` is
    ``None`` (one seed). Every table of means over seeds prints through this."""
    text = f"{mean:.{digits}f}{suffix}"
    return text if std is None else f"{text} ± {std:.{digits}f}"


def _value(row: Mapping[str, Any], key: str) -> Any:
    """Metric ``key`` of ``row``; a failed row's value is ``"skipped: failed: <reason>"``."""
    reason = failure(row)
    return row["metrics"].get(key, MISSING) if reason is None else f"{SKIP}failed: {reason}"


def summarize(rows: Iterable[Mapping[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """Group results-store rows by (step_index, step, method, variant) across seeds.

    Each metric of ``keys`` becomes ``{"mean", "std", "n"}`` from :func:`aggregate` over the
    seeds with a number (``std`` ``None`` for one), or ``{"skipped": "skipped: <reasons>"}``
    when no seed has one. Timings: the **median** seconds and speed-up over the seeds that
    recorded them (``None`` if none did). Groups are ordered by step index, step
    (:data:`STEPS`), method, variant; ``seeds`` lists the seeds of each. A failed row
    (:func:`failure`) counts as a seed without numbers whose reason is ``failed: <reason>``, and
    its time is left out of the medians; ``failed`` lists those reasons (distinct, empty when
    none) and ``n_failed`` counts those seeds.
    """
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["step_index"], r["step"], r["method"], r["variant"]), []).append(r)
    order = {s: i for i, s in enumerate(STEPS)}
    out = []
    for (idx, step, method, variant), rs in sorted(
        groups.items(), key=lambda kv: (kv[0][0], order[kv[0][1]], kv[0][2], kv[0][3])
    ):
        where = f"{step} {method}{f' [{variant}]' if variant else ''} (request {idx})"
        stats: dict[str, Any] = {}
        fails = [f for r in rs if (f := failure(r)) is not None]
        for k in keys:
            s = aggregate([_value(r, k) for r in rs], f"{where}: metric {k!r}")
            if s.n:
                stats[k] = {"mean": s.mean, "std": s.std, "n": s.n}
            else:
                stats[k] = {"skipped": SKIP + "; ".join(s.reasons)}
        ok = [r for r in rs if failure(r) is None]  # a failed run's time is not a cost
        timing = {
            t: aggregate([r["timings"].get(t) for r in ok], f"{where}: timing {t!r}").median
            for t in ("seconds", "speedup")
        }
        out.append(
            {
                "step_index": idx,
                "step": step,
                "method": method,
                "variant": variant,
                "seeds": sorted(r["seed"] for r in rs),
                "metrics": stats,
                "failed": list(dict.fromkeys(fails)),
                "n_failed": len(fails),
                "seconds_median": timing["seconds"],
                "speedup_median": timing["speedup"],
            }
        )
    return out


__all__ = [
    "FAILED",
    "MISSING",
    "NOT_RECORDED",
    "STEPS",
    "Stat",
    "aggregate",
    "failure",
    "is_int",
    "is_num",
    "mean_std_text",
    "summarize",
]
