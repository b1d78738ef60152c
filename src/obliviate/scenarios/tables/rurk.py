"""Table of the ``rurk`` suite (Hsu et al., NeurIPS 2025, Table 1 and Eq. 4): per setting and
model, UA, Avg. Gap and the mean residual knowledge r_τ at each τ of the audit (Gaussian, against
the same gold model), mean ± std over seeds, beside the original model's.

Target (per setting and unlearning method): mean r_τ ≤ 1.05 at every τ where the original's mean
r_τ exceeds 1.1; each line gives the method's mean Avg. Gap with it.
"""

from __future__ import annotations

import re
import statistics
from typing import Any

from rich.console import Console

from obliviate.scenarios.tables import _common as cm

RK_BAR = 1.05
ORIGINAL_BAR = 1.1
_TAU = re.compile(r"r_tau@(.+)/mean$")


def _taus(rows: list[cm.Row]) -> list[str]:
    found = {m.group(1) for r in rows for k in r["metrics"] if (m := _TAU.match(k))}
    return sorted(found, key=float)


def _model(r: cm.Row) -> str | None:
    return r["method"] if r["step"] in ("original", "unlearn") else None


def _values(rows: list[cm.Row], model: str, key: str) -> list[float]:
    vals = [cm.metric(r, key) for r in rows if _model(r) == model]
    return [v for v in vals if v is not None]


def check_targets(rows: list[cm.Row]) -> list[str]:
    """One line per (scenario, method): whether its mean r_τ ≤ RK_BAR wherever the original's
    mean r_τ > ORIGINAL_BAR, with the method's mean Avg. Gap."""
    out = []
    for name in cm.ordered(r["scenario"] for r in rows):
        rs = [r for r in rows if r["scenario"] == name]
        taus = _taus(rs)
        for m in cm.ordered(_model(r) for r in rs if _model(r) not in (None, "original")):
            bad = []
            for tau in taus:
                o = _values(rs, "original", f"r_tau@{tau}/mean")
                u = _values(rs, m, f"r_tau@{tau}/mean")
                if o and u and statistics.fmean(o) > ORIGINAL_BAR and statistics.fmean(u) > RK_BAR:
                    bad.append(f"τ={tau}: original {statistics.fmean(o):.3f}, {m} "
                               f"{statistics.fmean(u):.3f}")  # fmt: skip
            gap = cm.fmt_mean_std(_values(rs, m, "avg_gap"))
            verdict = "r_τ target met" if not bad else "r_τ target MISSED at " + "; ".join(bad)
            out.append(f"{name} / {m} (Avg. Gap {gap}): {verdict}")
    return out


def print_table(rows: list[dict[str, Any]], console: Console) -> None:
    """Print mean ± std per (scenario, model) of UA, Avg. Gap and r_τ, then the target lines."""
    taus = _taus(rows)
    seeds = sorted({r["seed"] for r in rows})
    t = cm.table(
        f"RURK suite: UA, Avg. Gap and mean r_τ (Gaussian), mean ± std over seeds {seeds}",
        ("setting", "model", "UA", "test", "Avg. Gap", *(f"r@{tau}" for tau in taus)),
    )
    for name in cm.ordered(r["scenario"] for r in rows):
        rs = [r for r in rows if r["scenario"] == name]
        for m in cm.ordered(_model(r) for r in rs if _model(r) is not None):
            t.add_row(
                name,
                m,
                cm.fmt_mean_std(_values(rs, m, "ua")),
                cm.fmt_mean_std(_values(rs, m, "acc/test")),
                cm.fmt_mean_std(_values(rs, m, "avg_gap")),
                *(cm.fmt_mean_std(_values(rs, m, f"r_tau@{tau}/mean"), 3) for tau in taus),
            )
    console.print(t)
    for line in check_targets(rows):
        console.print(line)
