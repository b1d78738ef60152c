"""The visual report of a results store: ``obliviate report RESULTS.db --out report/``.

:func:`report_from_store` opens the store read-only and hands its rows and ledger to
:func:`obliviate.report.build_report` (aggregation, sections, Markdown/HTML rendering and plots
live in :mod:`obliviate.report`); the other names are re-exported from there.
"""

from __future__ import annotations

from pathlib import Path

from obliviate.errors import ConfigError
from obliviate.report import (
    FIGURES_DIR,
    MAX_TABLE_TAUS,
    NOT_RECORDED,
    SECTION_TITLES,
    STEPS,
    Cell,
    ReportPaths,
    Stat,
    aggregate,
    build_report,
)
from obliviate.scenarios.store import ResultsStore


def report_from_store(
    db_path: str | Path,
    out_dir: str | Path,
    scenario: str | None = None,
    *,
    title: str | None = None,
) -> ReportPaths:
    """Read rows and ledger from the results store at ``db_path`` and :func:`build_report`.

    The store is opened read-only and never written to. Raises :class:`ConfigError` when the
    file does not exist, is not a results store (see :class:`ResultsStore`) or holds no rows
    (for ``scenario``, when given).
    """
    path = Path(db_path)
    if not path.is_file():
        raise ConfigError(f"results store {str(path)!r} does not exist")
    with ResultsStore(path, read_only=True) as store:
        rows = store.rows(scenario)
        ledger = store.ledger(scenario)
    if not rows:
        which = f" for scenario {scenario!r}" if scenario else ""
        raise ConfigError(f"results store {str(path)!r} holds no rows{which}")
    return build_report(rows, ledger, out_dir, title=title or f"obliviate report: {path.name}")


__all__ = [
    "FIGURES_DIR",
    "MAX_TABLE_TAUS",
    "NOT_RECORDED",
    "SECTION_TITLES",
    "STEPS",
    "Cell",
    "ReportPaths",
    "Stat",
    "aggregate",
    "build_report",
    "report_from_store",
]
