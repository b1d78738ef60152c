"""Conventions of an audit's values: skipped metrics, column names and per-τ key names.

A metric that cannot be computed is recorded as the string ``"skipped: <reason>"`` — never
``None`` and never dropped.
"""

from __future__ import annotations

from typing import Any

SKIP = "skipped: "
NO_GOLD = "no gold model given"
#: The audit's columns: the unlearned model, the gold retrain (audited as itself: the target
#: values) and the original model.
COLUMNS = ("unlearned", "gold", "original")


def skipped(reason: str) -> str:
    """The value recorded for a metric that could not be computed."""
    return SKIP + reason


def is_skipped(v: Any) -> bool:
    """True for a ``"skipped: …"`` value."""
    return isinstance(v, str) and v.startswith(SKIP)


def tau_key(tau: float) -> str:
    """Flat key prefix of r_τ at ``tau``: ``"r_tau@0.03"``."""
    return f"r_tau@{float(tau):g}"


__all__ = ["COLUMNS", "NO_GOLD", "SKIP", "is_skipped", "skipped", "tau_key"]
