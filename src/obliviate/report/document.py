"""The report as a list of blocks (headings, paragraphs, tables of cells, figures), built once and
rendered to Markdown and HTML by :mod:`obliviate.report.render`.

A :class:`Cell` carries its text and the reasons behind a missing or partial number; the
renderers turn those into numbered footnotes (and an HTML ``title``). :class:`Builder` collects
the blocks, gives headings unique anchors and writes each figure as a PNG under the report's
``figures/`` folder (byte-identical for the same numbers, see :mod:`obliviate.report.plots`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from obliviate.report import plots
from obliviate.report.aggregate import NOT_RECORDED, Stat, mean_std_text
from obliviate.report.groups import Entry

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
#: The report's folder of PNG figures (relative links in the Markdown page).
FIGURES_DIR = "figures"


@dataclass(frozen=True)
class Cell:
    """A table cell: its text and the footnote reasons attached to it."""

    text: str
    notes: tuple[str, ...] = ()
    numeric: bool = True


@dataclass
class Table:
    """A table: header texts, rows of cells, and each row's kind (its CSS class in HTML)."""

    headers: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)  # CSS class per row (model kind)

    def add(self, cells: list[Cell], kind: str = "") -> None:
        self.rows.append(cells)
        self.kinds.append(kind)


@dataclass(frozen=True)
class Heading:
    """A heading of ``level`` (2 = scenario) with a unique ``anchor``."""

    level: int
    text: str
    anchor: str


@dataclass(frozen=True)
class Para:
    """A paragraph of plain text."""

    text: str


@dataclass(frozen=True)
class Figure:
    """A PNG figure written as ``figures/<name>`` (embedded as base64 in HTML)."""

    name: str
    data: bytes
    alt: str


Block = Heading | Para | Table | Figure


def label_cell(text: str) -> Cell:
    """A left-aligned text cell."""
    return Cell(text, numeric=False)


def stat_cell(s: Stat, digits: int, *, median: bool = False, suffix: str = "") -> Cell:
    """``mean ± std`` (or the median) of ``s``; "—" with the reasons when there is no number;
    a footnote when only some seeds have one."""
    if s.n == 0:
        return Cell("—", s.reasons or (NOT_RECORDED,))
    if median:
        text = mean_std_text(s.median, None, digits, suffix)  # type: ignore[arg-type]
    else:
        text = mean_std_text(s.mean, s.std, digits, suffix)  # type: ignore[arg-type]
    notes: tuple[str, ...] = ()
    if s.n < s.total:
        notes = (f"number on {s.n} of {s.total} seeds; the others: {'; '.join(s.reasons)}",)
    return Cell(text, notes)


def time_cell(s: Stat) -> Cell:
    """Median wall time, with 3 decimals under 1 s, 2 under 100 s, none above."""
    if s.n == 0 or s.median is None:
        return stat_cell(s, 2, median=True)
    digits = 3 if s.median < 1 else (2 if s.median < 100 else 0)
    return stat_cell(s, digits, median=True)


def slug(text: str) -> str:
    """A lower-case anchor / file-name stem of ``text``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


class Builder:
    """Collects blocks and writes figures into ``fig_dir``."""

    def __init__(self, fig_dir: Path, colors: dict[str, str], table_taus: Sequence[float] | None):
        self.fig_dir = fig_dir
        self.colors = colors
        self.table_taus = table_taus
        self.blocks: list[Block] = []
        self.images: list[str] = []
        self._anchors: dict[str, int] = {}

    def heading(self, level: int, text: str, scope: str = "") -> None:
        base = slug(f"{scope} {text}")
        n = self._anchors.get(base, 0)
        self._anchors[base] = n + 1
        self.blocks.append(Heading(level, text, base if n == 0 else f"{base}-{n}"))

    def para(self, text: str) -> None:
        self.blocks.append(Para(text))

    def table(self, t: Table) -> None:
        """Add ``t`` unless it has no rows."""
        if t.rows:
            self.blocks.append(t)

    def figure(self, fig: Any, stem: str, alt: str) -> None:
        """Write ``fig`` as ``figures/NN-<stem>.png`` (numbered in order) and add it."""
        name = f"{len(self.images) + 1:02d}-{slug(stem)}.png"
        data = plots.save_png(fig, self.fig_dir / name)
        self.images.append(name)
        self.blocks.append(Figure(name, data, alt))

    def color(self, e: Entry) -> str:
        """Gold and original have fixed colours; a heal entry takes its healed method's."""
        if e.step == "gold":
            return plots.GOLD_COLOR
        if e.step == "original":
            return plots.ORIGINAL_COLOR
        return self.colors[e.label if e.step == "unlearn" else e.method]

    def series(self, e: Entry, stats: Sequence[Stat]) -> plots.Series:
        """``e``'s means and stds (NaN / 0 where absent) across a figure's x positions."""
        return plots.Series(
            label=e.label,
            color=self.color(e),
            mean=[s.mean if s.n else float("nan") for s in stats],
            std=[s.std if s.std is not None else 0.0 for s in stats],
            kind="method" if e.step == "unlearn" else e.step,
        )


__all__ = [
    "FIGURES_DIR",
    "SECTION_TITLES",
    "Block",
    "Builder",
    "Cell",
    "Figure",
    "Heading",
    "Para",
    "Table",
    "label_cell",
    "slug",
    "stat_cell",
    "time_cell",
]
