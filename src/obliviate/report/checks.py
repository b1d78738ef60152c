"""Checks of the report's input: results-store rows and request-ledger entries (the formats at
the top of :mod:`obliviate.scenarios.store`), as plain dicts.

A malformed row (a missing key, an unknown step, a non-integer seed or step index, an empty
scenario or method name, a non-mapping ``metrics``/``timings``/``info``) or a duplicate of one
scenario / step_index / step / method / variant / seed raises :class:`DataFormatError` naming
the row; so does an empty input, and a failed row (``metrics["failed"]``) whose reason is not a
string.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from obliviate.errors import DataFormatError
from obliviate.report.aggregate import FAILED, STEPS, is_int

_ROW_KEYS = ("scenario", "step", "step_index", "method", "seed", "metrics")
_LEDGER_KEYS = ("scenario", "seed", "step_index", "method")


@dataclass(frozen=True)
class Row:
    """One checked result row (``variant`` "" when absent; ``timings``/``info`` {} when absent)."""

    scenario: str
    step: str
    step_index: int
    method: str
    variant: str
    seed: int
    metrics: Mapping[str, Any]
    timings: Mapping[str, Any]
    info: Mapping[str, Any]


def check_rows(rows: Iterable[Mapping[str, Any]]) -> list[Row]:
    """Validate result rows; raise :class:`DataFormatError` naming the row and the key."""
    out: list[Row] = []
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
            if not is_int(r[k]):
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
        reason = r["metrics"].get(FAILED) if isinstance(r["metrics"], Mapping) else None
        if reason is not None and not isinstance(reason, str):
            raise DataFormatError(f"{where}: a failed row's reason must be text, got {reason!r}")
        row = Row(
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


def check_ledger(ledger: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Validate ledger entries; raise :class:`DataFormatError` naming the entry and the key."""
    out = []
    for i, e in enumerate(ledger):
        if not isinstance(e, Mapping):
            raise DataFormatError(f"ledger entry {i}: expected a mapping, got {type(e).__name__}")
        missing = [k for k in _LEDGER_KEYS if k not in e]
        if missing:
            raise DataFormatError(f"ledger entry {i} lacks key(s) {', '.join(missing)}")
        for k in ("seed", "step_index"):
            if not is_int(e[k]):
                raise DataFormatError(f"ledger entry {i}: {k} must be an integer, got {e[k]!r}")
        out.append(e)
    return out


__all__ = ["Row", "check_ledger", "check_rows"]
