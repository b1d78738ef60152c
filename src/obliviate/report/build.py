"""The visual report of result rows: :func:`build_report` writes ``report.md``, ``report.html``
and ``figures/*.png``.

Per scenario, and per request for sequential scenarios, it shows what DESIGN.md's "Definitions
to share" define: the metric table vs gold, accuracy bars, r_τ curves and prevalence,
per-class contamination, healing recovery, cost, and the request ledger with the metrics across
the sequence (:mod:`obliviate.report.sections`, :mod:`obliviate.report.sections_run`).
Aggregation over seeds is :mod:`obliviate.report.aggregate`'s (mean ± sample std, medians for
timings). The same rows give the same text and byte-identical figures; only the optional
``generated`` line carries a timestamp.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from obliviate._io import atomic_dir, atomic_write_bytes
from obliviate.errors import ConfigError
from obliviate.report import plots
from obliviate.report.aggregate import failure
from obliviate.report.checks import Row, check_ledger, check_rows
from obliviate.report.document import FIGURES_DIR, Builder
from obliviate.report.groups import Group, group_rows
from obliviate.report.render import render_html, render_md
from obliviate.report.sections import (
    accuracy_section,
    contamination_section,
    metrics_section,
    residual_section,
)
from obliviate.report.sections_run import (
    cost_section,
    failed_section,
    healing_section,
    ledger_section,
    overview,
    scenario_info,
)


@dataclass(frozen=True)
class ReportPaths:
    """Where :func:`build_report` wrote the report."""

    markdown: Path
    html: Path
    images: list[Path]


def build_report(
    rows: Iterable[Mapping[str, Any]],
    ledger: Iterable[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    title: str = "obliviate report",
    taus: Sequence[float] | None = None,
    generated: str | None = None,
) -> ReportPaths:
    """Write ``report.md``, ``report.html`` and ``figures/*.png`` under ``out_dir``.

    ``rows`` are results-store rows: ``scenario``, ``step`` (original / gold / unlearn / heal),
    ``step_index``, ``method``, ``variant`` (healing: ``"pool/similarity/e<epochs>"``), ``seed``,
    ``metrics`` (numbers or ``"skipped: <reason>"``; ``r_tau@<τ>/mean`` and
    ``r_tau@<τ>/frac_gt1`` per τ; ``per_class/test`` a class → accuracy mapping), ``timings``,
    ``info``. ``ledger`` entries carry ``scenario``, ``seed``, ``step_index``, ``method`` and
    optionally ``request_hash``, ``request_size``, ``request_source``, ``model_version``,
    ``parent_version``, ``metrics_summary``. ``taus`` limits the r_τ columns of the metric
    tables (the curves keep every τ). ``generated`` is the line under the title (default: the
    current UTC time; ``""`` for none, e.g. for reproducible output).

    Malformed rows (a missing key, an unknown step, a non-integer seed, duplicates of one
    scenario/step_index/step/method/variant/seed, a metric that is neither a number nor a
    skip reason) raise :class:`DataFormatError` naming the row. Failed rows (``metrics`` =
    ``{"failed": "<reason>"}``: a method that diverged) are listed in a "Failed" table per
    scenario with their reasons and enter no other table, figure or average.
    ``out_dir/figures`` belongs to the report. A folder that holds only the report (or does not
    exist yet) is built beside it and swapped in at once, so a kill never leaves a mix of old
    and new; in a folder holding other files too, ``figures`` is replaced whole and the two
    pages atomically, one by one.
    """
    checked = check_rows(rows)
    entries_ledger = check_ledger(ledger)
    if taus is not None and not all(isinstance(t, int | float) for t in taus):
        raise ConfigError(f"taus must be numbers, got {list(taus)!r}")
    out = Path(out_dir)
    failed = [r for r in checked if failure(r) is not None]
    grouped = group_rows([r for r in checked if failure(r) is None])
    for scn in sorted({r.scenario for r in failed} - set(grouped)):
        grouped[scn] = []  # a scenario with failed rows only still gets its section
    grouped = dict(sorted(grouped.items()))
    entries = [e for gs in grouped.values() for g in gs for e in g.entries]
    labels = sorted({e.label for e in entries if e.step == "unlearn"})
    labels += sorted({e.method for e in entries if e.step == "heal"} - set(labels))
    colors = plots.palette(labels)  # a heal entry takes its healed method's colour
    if generated is None:
        now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        generated = f"generated {now}"
    if not out.exists() or {e.name for e in out.iterdir()} <= _OWN:
        with atomic_dir(out) as tmp:  # the whole folder swapped at once: never a mix
            b, _ = _write(tmp, grouped, failed, entries_ledger, colors, taus, title, generated)
            _publishable(tmp / FIGURES_DIR, tmp / "report.md", tmp / "report.html")
        out.chmod(0o777 & ~_umask())
    else:  # a folder holding other files too: replace only what belongs to the report
        with atomic_dir(out / FIGURES_DIR) as tmp:
            b, (md, html) = _write(
                tmp, grouped, failed, entries_ledger, colors, taus, title, generated, pages=False
            )
        atomic_write_bytes(out / "report.md", md)
        atomic_write_bytes(out / "report.html", html)
        _publishable(out / FIGURES_DIR, out / "report.md", out / "report.html")
    md_path, html_path = out / "report.md", out / "report.html"
    return ReportPaths(md_path, html_path, [out / FIGURES_DIR / n for n in b.images])


#: What a report folder holds (a folder holding only these is replaced as a whole).
_OWN = {"report.md", "report.html", FIGURES_DIR}


def _write(
    folder: Path,
    grouped: dict[str, list[Group]],
    failed: list[Row],
    ledger: list[Mapping[str, Any]],
    colors: Any,
    taus: Sequence[float] | None,
    title: str,
    generated: str,
    *,
    pages: bool = True,
) -> tuple[Builder, tuple[bytes, bytes]]:
    """Render figures into ``folder/figures`` (``folder`` itself when ``pages`` is False) and,
    with ``pages``, ``report.md`` and ``report.html`` into ``folder``; return the builder and
    the two rendered pages."""
    figs = folder / FIGURES_DIR if pages else folder
    figs.mkdir(exist_ok=True)
    b = Builder(figs, colors, taus)
    overview(b, grouped, failed)
    for scn, groups in grouped.items():
        _scenario(b, scn, groups, failed, ledger)
    md = render_md(b.blocks, title, generated).encode("utf-8")
    html = render_html(b.blocks, title, generated).encode("utf-8")
    if pages:
        (folder / "report.md").write_bytes(md)
        (folder / "report.html").write_bytes(html)
    return b, (md, html)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _scenario(b: Builder, scn: str, groups: list[Group], failed: list[Row],
              ledger: list[Mapping[str, Any]]) -> None:  # fmt: skip
    """Every section of one scenario: per request step, its failed methods, then its ledger and
    sequence."""
    b.heading(2, f"Scenario: {scn}")
    info = scenario_info(groups)
    if info:
        b.para(info + ".")
    seq = len(groups) > 1
    for g in groups:
        scope = f"{scn} step {g.step_index}" if seq else scn
        level = 4 if seq else 3
        if seq:
            sizes = {
                str(r.info["request_size"])
                for e in g.entries
                for r in e.rows
                if "request_size" in r.info
            }
            size = f" (request of {', '.join(sorted(sizes))} samples)" if sizes else ""
            b.heading(3, f"Request step {g.step_index}{size}", scn)
        metrics_section(b, g, level, scope)
        accuracy_section(b, g, level, scope)
        residual_section(b, g, level, scope)
        contamination_section(b, g, level, scope)
        healing_section(b, g, level, scope)
        cost_section(b, g, level, scope)
    failed_section(b, scn, failed, 3)
    ledger_section(b, scn, groups, ledger, 3)


def _publishable(folder: Path, *files: Path) -> None:
    """Give the report the permissions of an ordinary file (the atomic writers create 0600 /
    0700 temporaries) so the page can be served or shared, honouring the umask."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for f in (*files, *folder.iterdir()):
        f.chmod(0o666 & ~umask)


__all__ = ["ReportPaths", "build_report"]
