"""The visual report of a results store: aggregation over seeds (one implementation, shared with
the results store), checks of the rows, a document model, sections, Markdown/HTML renderers and
plots.

It works on plain result rows and ledger entries (the formats at the top of
:mod:`obliviate.scenarios.store`) and never opens a store itself: ``obliviate report`` reads the
store read-only (:func:`obliviate.scenarios.report.report_from_store`) and calls
:func:`build_report`.

>>> from obliviate.report import build_report                      # doctest: +SKIP
>>> build_report(store.rows(), store.ledger(), "report/")          # doctest: +SKIP
"""

from obliviate.report.aggregate import NOT_RECORDED, STEPS, Stat, aggregate, summarize
from obliviate.report.build import ReportPaths, build_report
from obliviate.report.console import print_table
from obliviate.report.document import FIGURES_DIR, SECTION_TITLES, Cell
from obliviate.report.sections import MAX_TABLE_TAUS

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
    "print_table",
    "summarize",
]
