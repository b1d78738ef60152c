"""Table printers over the results store, one module per built-in suite.

Each module exposes ``print_table(rows, console)``: ``rows`` in the store's row format
(:mod:`obliviate.scenarios.store`), e.g. ``ResultsStore(path).rows()``, printed as the suite's
comparison table with ``console`` (a :class:`rich.console.Console`).
"""
