"""Avg. Gap to the gold (retrained) model, RURK (Hsu et al., NeurIPS 2025) Table 1."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from obliviate.metrics._common import METRICS, MetricError

#: Retain accuracy, unlearn accuracy, test accuracy, MIA efficacy — all in percent.
DEFAULT_GAP_KEYS: tuple[str, ...] = ("acc/retain", "ua", "acc/test", "mia_efficacy")


def gaps(
    metrics: Mapping[str, float],
    gold: Mapping[str, float],
    keys: Sequence[str] = DEFAULT_GAP_KEYS,
) -> dict[str, float]:
    """``{key: |metrics[key] − gold[key]|}``; raises naming a missing or non-finite entry."""
    if not keys:
        raise MetricError("Avg. Gap needs at least one key")
    out: dict[str, float] = {}
    for k in keys:
        for name, d in (("metrics", metrics), ("gold", gold)):
            if k not in d:
                raise MetricError(f"Avg. Gap: key {k!r} missing from {name} (has {sorted(d)})")
            v = d[k]
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise MetricError(f"Avg. Gap: {name}[{k!r}] = {v!r} is not a finite number")
        out[k] = abs(float(metrics[k]) - float(gold[k]))
    return out


@METRICS.register(
    "avg_gap",
    higher_is_better=False,
    unit="percentage points",
    description="mean |metric − gold| over retain acc, UA, test acc, MIA efficacy; report the "
    "original model's Avg. Gap beside it",
    reference="RURK (Hsu et al. 2025) Table 1",
)
def avg_gap(
    metrics: Mapping[str, float],
    gold: Mapping[str, float],
    keys: Sequence[str] = DEFAULT_GAP_KEYS,
) -> float:
    """Mean over ``keys`` of |metrics[k] − gold[k]| (0 when the model is the gold model)."""
    g = gaps(metrics, gold, keys)
    return sum(g.values()) / len(g)
