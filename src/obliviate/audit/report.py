"""``AuditReport``: an audit's values per column, its details, and their table and JSON form.

The table lists every key of every registered audit entry (:mod:`obliviate.audit.entries`) that
some column holds, in registry order, with the entry's label, number format and reading hint; a
skipped value shows as a numbered footnote with its reason.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text
from torch import Tensor

from obliviate._io import atomic_write_json
from obliviate.audit.entries import KeySpec, audit_entries
from obliviate.audit.values import SKIP, is_skipped, skipped
from obliviate.errors import ConfigError


def _fmt(v: Any, kind: str) -> str:
    if isinstance(v, bool):
        return str(v)
    if kind == "int" and isinstance(v, int | float):
        return str(int(v))
    if isinstance(v, int | float):
        digits = {"pct": 2, "f2": 2, "f3": 3, "f4": 4}.get(kind, 3)
        return f"{v:.{digits}f}"
    return str(v)


@dataclass
class AuditReport:
    """All audit results. ``values[column][key]`` is a number or ``"skipped: <reason>"``.

    Columns: ``unlearned``, ``gold`` (gold audited as itself: the target values) and
    ``original`` (when given). A key absent from a column means "not applicable to that column"
    (r_τ, for instance, is computed for the unlearned model only). ``details`` holds the nested
    results (per-class accuracy, contamination tables, per-τ residual summaries, gap
    components); ``config`` the audit's inputs; ``info`` set sizes and the audit's own timing.
    """

    columns: list[str]
    values: dict[str, dict[str, Any]]
    details: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, column: str) -> dict[str, Any]:
        return self.values[column]

    def skipped(self) -> dict[str, str]:
        """``{"column/key": reason}`` for every skipped metric."""
        return {
            f"{c}/{k}": v[len(SKIP) :]
            for c in self.columns
            for k, v in self.values[c].items()
            if is_skipped(v)
        }

    # ----------------------------------------------------------------------------- output
    def to_dict(self) -> dict[str, Any]:
        return _jsonable(
            {
                "format": "obliviate.audit/1",
                "columns": self.columns,
                "values": self.values,
                "details": self.details,
                "config": self.config,
                "info": self.info,
            }
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AuditReport:
        if not isinstance(d, Mapping) or d.get("format") != "obliviate.audit/1":
            raise ConfigError("not an audit report (expected format 'obliviate.audit/1')")
        return cls(
            list(d["columns"]),
            {c: dict(v) for c, v in d["values"].items()},
            dict(d.get("details", {})),
            dict(d.get("config", {})),
            dict(d.get("info", {})),
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the report as JSON, atomically (temp file + rename)."""
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> AuditReport:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, KeyError) as e:
            raise ConfigError(f"cannot read audit report {path}: {e}") from None

    def _rows(self) -> list[tuple[str, str, str, str, str]]:
        """(section, key, label, format, how to read it) of every row, in registry order."""
        rows = []
        for entry in audit_entries():
            specs = [s for s in entry.keys if s.shown]
            for s in specs:
                if s.variable is None:
                    rows.append((entry.section, s.key, s.title(self.config), s.fmt, s.reading))
            for tau in self.config.get("taus", []):
                for s in specs:
                    if s.variable == "tau":
                        label = s.title(self.config, tau=tau)
                        rows.append((entry.section, s.expand(tau=tau), label, s.fmt, s.reading))
            for step in self._steps(specs):
                for s in specs:
                    if s.variable == "step":
                        label = s.title(self.config, step=step)
                        rows.append((entry.section, s.expand(step=step), label, s.fmt, s.reading))
        return rows

    def _steps(self, specs: list[KeySpec]) -> list[str]:
        """The steps of the per-step keys (``time_s/<step>``) present in any column."""
        first = next((s for s in specs if s.variable == "step"), None)
        if first is None:
            return []
        found = (first.match(k) for c in self.columns for k in self.values[c])
        return sorted({m["step"] for m in found if m is not None})

    def to_table(self) -> Group:
        """Rich renderable: the metric table, footnotes for skipped cells, per-class accuracy."""
        title = self.config.get("title") or "unlearning audit"
        t = Table(title=title, show_lines=False)
        t.add_column("metric", no_wrap=True)
        for c in self.columns:
            t.add_column(c, justify="right")
        t.add_column("read", style="dim")
        notes: dict[str, int] = {}
        section = None
        for sec, key, label, fmt, note in self._rows():
            if not any(key in self.values[c] for c in self.columns):
                continue
            if sec != section:
                if section is not None:
                    t.add_section()
                section = sec
            cells = []
            for c in self.columns:
                v = self.values[c].get(key, "—")
                if is_skipped(v):
                    n = notes.setdefault(v[len(SKIP) :], len(notes) + 1)
                    cells.append(f"[yellow]skipped [{n}][/]")
                elif fmt == "relearn" and isinstance(v, int | float):
                    capped = self.values[c].get("relearn_time/capped")
                    cells.append(f">{int(v)}" if capped else str(int(v)))
                else:
                    cells.append(_fmt(v, fmt))
            t.add_row(label, *cells, note)
        parts: list[Any] = [t]
        if notes:
            foot = Text()
            for reason, n in notes.items():
                foot.append(f"[{n}] skipped: {reason}\n", style="yellow")
            parts.append(foot)
        pc = self.details.get("per_class/test", {})
        if pc and any(not is_skipped(v) for v in pc.values()):
            names: list[str] = []
            for v in pc.values():
                if isinstance(v, dict):
                    names += [n for n in v if n not in names]
            if 0 < len(names) <= 20:
                t2 = Table(title="test accuracy per class (%)")
                t2.add_column("class")
                for c in self.columns:
                    t2.add_column(c, justify="right")
                for name in names:
                    row = [
                        _fmt(pc[c].get(name, "—"), "pct") if isinstance(pc.get(c), dict) else "—"
                        for c in self.columns
                    ]
                    t2.add_row(name, *row)
                parts.append(t2)
        return Group(*parts)

    def __rich__(self) -> Group:
        return self.to_table()

    def __str__(self) -> str:
        buf = io.StringIO()
        Console(file=buf, width=120, color_system=None, force_terminal=False).print(self)
        return buf.getvalue()


def _jsonable(o: Any) -> Any:
    """Plain JSON types; a non-finite float becomes a ``skipped`` string (never NaN in JSON)."""
    if isinstance(o, Mapping):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_jsonable(v) for v in o]
    if isinstance(o, Tensor):
        return _jsonable(o.tolist())
    if isinstance(o, np.generic):
        return _jsonable(o.item())
    if isinstance(o, bool) or o is None or isinstance(o, int | str):
        return o
    if isinstance(o, float):
        return o if math.isfinite(o) else skipped(f"not a finite number ({o})")
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot serialise {type(o).__name__} in an audit report")


__all__ = ["AuditReport"]
