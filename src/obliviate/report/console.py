"""Printing rich tables to a terminal or to a pipe.

On a terminal a wide table is fitted to the window (rich shrinks columns and cuts text with
"…"). Written to a pipe or a file (``make demo > log``) there is no window to fit: rich falls
back to 80 columns and would cut method names to a few characters, so :func:`print_table`
prints at the table's full width instead.
"""

from __future__ import annotations

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

#: Widest line :func:`print_table` writes to a non-terminal (a guard, not a layout choice).
MAX_PIPE_WIDTH = 10_000


def print_table(console: Console, table: Table) -> None:
    """Print ``table`` on ``console``; when the console is not a terminal, at the table's
    natural width (at most :data:`MAX_PIPE_WIDTH`) so that no cell is cut."""
    if console.is_terminal:
        console.print(table)
        return
    need = Measurement.get(console, console.options.update_width(MAX_PIPE_WIDTH), table).maximum
    width = console.width
    if need <= width:
        console.print(table)
        return
    console.width = need
    try:
        console.print(table)
    finally:
        console.width = width


__all__ = ["MAX_PIPE_WIDTH", "print_table"]
