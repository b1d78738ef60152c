"""The report's view of checked rows: one :class:`Entry` per model (step, method, variant) with
its seeds' rows, one :class:`Group` per request step of a scenario.

Entries are ordered original, gold, unlearning methods by name, then healed models by method,
pool, similarity and epochs; every statistic of an entry comes from
:func:`obliviate.report.aggregate.aggregate`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from obliviate.errors import DataFormatError
from obliviate.report.aggregate import MISSING, STEPS, Stat, aggregate, is_num
from obliviate.report.checks import Row

_TAU_MEAN = re.compile(r"^r_tau@([^/]+)/mean$")


@dataclass(frozen=True)
class Entry:
    """The rows of one model (step, method, variant) in one request step: one per seed."""

    step: str
    method: str
    variant: str
    rows: tuple[Row, ...]

    @property
    def label(self) -> str:
        """The model's name in tables and legends."""
        if self.step == "gold":
            return "gold (retrain)"
        if self.step == "original":
            return "original"
        if self.step == "heal":
            return f"{self.method} + heal {self.variant}".rstrip()
        return f"{self.method} [{self.variant}]" if self.variant else self.method

    def stat(self, key: str) -> Stat:
        return aggregate(
            [r.metrics.get(key, MISSING) for r in self.rows],
            f"{self.label}: metric {key!r}",
        )

    def has(self, key: str) -> bool:
        return any(key in r.metrics for r in self.rows)

    def time(self) -> Stat:
        """Wall time per seed: ``metrics["time_s"]``, else ``timings["seconds"]``."""
        vals = []
        for r in self.rows:
            v = r.metrics.get("time_s", MISSING)
            t = r.timings.get("seconds")
            vals.append(v if is_num(v) or not is_num(t) else t)
        return aggregate(vals, f"{self.label}: time")

    def speedup(self) -> Stat:
        """Recorded speed-up vs gold per seed: ``metrics["speedup"]``, else ``timings``."""
        vals = []
        for r in self.rows:
            v = r.metrics.get("speedup", MISSING)
            t = r.timings.get("speedup")
            vals.append(v if is_num(v) or not is_num(t) else t)
        return aggregate(vals, f"{self.label}: speed-up")


@dataclass
class Group:
    """Everything recorded for one request step of one scenario."""

    scenario: str
    step_index: int
    entries: list[Entry]

    def of(self, step: str) -> list[Entry]:
        return [e for e in self.entries if e.step == step]

    @property
    def original(self) -> Entry | None:
        return next(iter(self.of("original")), None)

    @property
    def gold(self) -> Entry | None:
        return next(iter(self.of("gold")), None)

    def models(self) -> list[Entry]:
        """Original, gold, then the unlearning methods."""
        return [e for e in (self.original, self.gold) if e is not None] + self.of("unlearn")


def heal_params(e: Entry) -> tuple[str, str, str]:
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


def epoch_key(ep: str) -> tuple[int, str]:
    """Numeric epochs in order, anything else after them."""
    return (int(ep), "") if ep.isdigit() else (1 << 30, ep)


_STEP_ORDER = {s: i for i, s in enumerate(STEPS)}


def _entry_order(e: Entry) -> tuple[Any, ...]:
    """Original, gold, unlearn by method, heal by method / pool / similarity / epochs."""
    if e.step == "heal":
        pool, sim, ep = heal_params(e)
        return (_STEP_ORDER[e.step], e.method, pool, sim, epoch_key(ep), e.variant)
    return (_STEP_ORDER[e.step], e.method, e.variant)


def group_rows(rows: list[Row]) -> dict[str, list[Group]]:
    """Rows by scenario (sorted), then by request step (sorted), as ordered entries."""
    by: dict[tuple[str, int], dict[tuple[str, str, str], list[Row]]] = {}
    for r in rows:
        by.setdefault((r.scenario, r.step_index), {}).setdefault(
            (r.step, r.method, r.variant), []
        ).append(r)
    out: dict[str, list[Group]] = {}
    for (scn, idx), models in sorted(by.items()):
        entries = [
            Entry(step, method, variant, tuple(sorted(rs, key=lambda r: r.seed)))
            for (step, method, variant), rs in models.items()
        ]
        out.setdefault(scn, []).append(Group(scn, idx, sorted(entries, key=_entry_order)))
    return out


def audited_taus(entries: Iterable[Entry]) -> list[tuple[float, str]]:
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


__all__ = ["Entry", "Group", "audited_taus", "epoch_key", "group_rows", "heal_params"]
