"""The main job (``make demo``): the whole story on real MNIST with small_cnn, in one command.

Runs the built-in ``demo`` suite (``obliviate/scenarios/suites/demo/``, two scenarios sharing one
original model): train the original, let an adversary choose the deletion requests (the 1 % of
training images with the lowest true-class logit; an indirect request for the class next to a
victim class), retrain the gold model, unlearn with several
methods (including the RURK and ROKA defenses), audit every model against gold (accuracy, UA,
MIA, Avg. Gap, residual knowledge r_τ, contamination, cost), heal the unlearned models with
twins, spares or the remaining data, store one row per result in a SQLite results store, and
write the Markdown + HTML report (plus a headless-Chromium screenshot of it when Chromium is
installed). Artifacts are cached, so a second run only re-renders the report.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from rich.console import Console

from obliviate.errors import ObliviateError
from obliviate.report.console import print_table
from obliviate.report.screenshot import screenshot
from obliviate.scenarios import ResultsStore, load_suite, run_scenario
from obliviate.scenarios.report import report_from_store


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="Output folder.")
    p.add_argument("--quick", action="store_true", help="The CI size (smaller data, fewer τ).")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto.")
    p.add_argument("--no-screenshot", action="store_true", help="Skip the Chromium screenshot.")
    p.add_argument("--quiet", action="store_true", help="No progress bars or step log.")
    a = p.parse_args(argv)
    console = Console()
    t0 = time.perf_counter()
    try:
        store = ResultsStore(a.out / "results.db")
        results = []
        for scenario in load_suite("demo", "quick" if a.quick else "full"):
            console.rule(scenario.name)
            res = run_scenario(
                scenario,
                results=store,
                cache=a.out / "cache",
                device=a.device,
                show_progress=not a.quiet,
                console=None if a.quiet else console,
            )
            results.append(res)
        for res in results:
            print_table(console, store.summary(res.scenario))
        paths = report_from_store(store.path, a.out / "report", title="obliviate demo")
    except ObliviateError as e:
        console.print(f"[red]error:[/] {e}")
        return 2
    shot = None
    if not a.no_screenshot and (shutil.which("chromium") or shutil.which("chromium-browser")):
        shot = screenshot(paths.html, a.out / "report" / "screenshot.png", height=9000)
    for res in results:
        console.print(
            f"[bold]{res.scenario}[/]: {res.rows_written} rows written, {res.rows_skipped} "
            f"reused → {store.path}"
        )
    console.print(f"report: [bold]{paths.html}[/] (Markdown: {paths.markdown})")
    if shot is not None:
        console.print(f"screenshot: {shot}")
    console.print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
