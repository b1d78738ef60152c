"""``obliviate run SCENARIO.yaml`` and ``obliviate bench SUITE``, added by :func:`register`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperCommand

from obliviate.cli_common import (
    DEVICE_HELP,
    _device_option,
    _fail,
    _out_dir,
    _out_file,
    _seeds,
    console,
)
from obliviate.errors import ConfigError, ObliviateError
from obliviate.report.console import print_table
from obliviate.scenarios import (
    ResultsStore,
    RunResult,
    list_suites,
    load_scenario,
    load_suite,
    run_scenario,
)
from obliviate.scenarios.overrides import apply_sets, parse_sets
from obliviate.scenarios.printers import print_suite
from obliviate.scenarios.report import report_from_store

_SET_HELP = (
    "Overlay KEY=VALUE on the scenario (dotted key, YAML value; repeatable), e.g. "
    "--set defenses.healing.options.lr=3e-4 --set methods.fisher.config.lambda_sigma2=1e-10."
)


def _print_result(res: RunResult, store: ResultsStore) -> None:
    print_table(console, store.summary(res.scenario))
    hits = sum(res.cache["hits"].values())
    misses = sum(res.cache["misses"].values())
    console.print(
        f"[bold]{res.scenario}[/]: {res.rows_written} rows written, {res.rows_skipped} already "
        f"stored{f', [red]{res.rows_failed} failed[/]' if res.rows_failed else ''}; artifacts "
        f"{hits} reused, {misses} computed; {res.seconds:.1f} s → "
        f"[bold]{res.store_path}[/]"
    )


class _BenchCommand(TyperCommand):
    """``obliviate bench``: its help lists the built-in suites from the registry, read when the
    help is shown (so a suite added later is listed)."""

    def format_help(self, ctx, formatter):  # type: ignore[no-untyped-def]
        for p in self.params:
            if p.name == "suite":
                p.help = f"Built-in suite: {', '.join(list_suites())}."
        super().format_help(ctx, formatter)


def register(app: typer.Typer) -> None:
    """Add the ``run``, ``bench`` and ``report`` verbs to the ``obliviate`` app."""

    @app.command("report")
    def report(
        results: Annotated[Path, typer.Argument(help="Results store (SQLite file).")],
        out: Annotated[
            Path,
            typer.Option(
                help="Output folder: report.md, report.html, figures/.", callback=_out_dir
            ),
        ] = Path("report"),
        scenario: Annotated[str | None, typer.Option(help="Only this scenario.")] = None,
    ) -> None:
        """Write the Markdown and self-contained HTML report of a results store."""
        try:
            paths = report_from_store(results, out, scenario=scenario)
        except ObliviateError as e:
            _fail(e)
        console.print(f"{len(paths.images)} figures → [bold]{paths.markdown}[/]")
        console.print(f"HTML report: [bold]{paths.html}[/]")

    @app.command("run")
    def run(
        scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
        results: Annotated[
            Path, typer.Option(help="Results store (SQLite file).", callback=_out_file)
        ] = Path("obliviate-results.db"),
        cache: Annotated[
            Path, typer.Option(help="Artifact cache folder (models, requests).", callback=_out_dir)
        ] = Path(".obliviate-cache"),
        seeds: Annotated[
            str | None, typer.Option(help="Comma-separated seeds (overrides the file's).")
        ] = None,
        size: Annotated[
            str | None,
            typer.Option(
                help="A `sizes` overlay of the file (built-in suites: quick, full, paper)."
            ),
        ] = None,
        device: Annotated[
            str | None,
            typer.Option(help=DEVICE_HELP + " Overrides the file's.", callback=_device_option),
        ] = None,
        quiet: Annotated[bool, typer.Option(help="No progress bars or step log.")] = False,
        set_: Annotated[list[str] | None, typer.Option("--set", help=_SET_HELP)] = None,
    ) -> None:
        """Run a scenario: train, attack, retrain gold, unlearn, heal, audit; store every row."""
        try:
            seed_list = _seeds(seeds)
            scn = apply_sets(load_scenario(scenario, size=size), set_ or [])
            res = run_scenario(  # opens the store only once the scenario validated
                scn,
                results=results,
                cache=cache,
                seeds=seed_list,
                device=device,
                show_progress=not quiet,
                console=None if quiet else console,
            )
            store = ResultsStore(results, read_only=True)
        except ObliviateError as e:
            _fail(e)
        _print_result(res, store)

    @app.command("bench", cls=_BenchCommand)
    def bench(
        suite: Annotated[str, typer.Argument(help="Built-in suite (listed by --help).")],
        size: Annotated[
            str | None,
            typer.Option(
                help="quick (CI, ≤ 2 min), full (CPU, ≤ 60 min) or paper (the papers' sizes, "
                "for a GPU). Default: full."
            ),
        ] = None,
        quick: Annotated[bool, typer.Option(help="Alias of --size quick.")] = False,
        results: Annotated[
            Path, typer.Option(help="Results store (SQLite file).", callback=_out_file)
        ] = Path("obliviate-bench.db"),
        cache: Annotated[
            Path, typer.Option(help="Artifact cache folder.", callback=_out_dir)
        ] = Path(".obliviate-cache"),
        seeds: Annotated[
            str | None, typer.Option(help="Comma-separated seeds (overrides the suite's).")
        ] = None,
        device: Annotated[
            str | None, typer.Option(help=DEVICE_HELP, callback=_device_option)
        ] = None,
        quiet: Annotated[bool, typer.Option(help="No progress bars or step log.")] = False,
        set_: Annotated[list[str] | None, typer.Option("--set", help=_SET_HELP)] = None,
    ) -> None:
        """Run every scenario of a built-in suite at one size into one results store, then print
        the suite's table (when it has a printer)."""
        try:
            seed_list = _seeds(seeds)
            if quick and size not in (None, "quick"):
                raise ConfigError(f"--quick means --size quick, but --size {size} was given")
            sets = parse_sets(set_ or [])
            scenarios = [
                apply_sets(s, sets)
                for s in load_suite(suite, "quick" if quick else (size or "full"))
            ]
            for scn in scenarios:
                console.rule(f"{suite}: {scn.name}")
                res = run_scenario(
                    scn,
                    results=results,
                    cache=cache,
                    seeds=seed_list,
                    device=device,
                    show_progress=not quiet,
                    console=None if quiet else console,
                )
                store = ResultsStore(results, read_only=True)
                _print_result(res, store)
            if seeds is not None:
                scenarios = [s.model_copy(update={"seeds": seed_list}) for s in scenarios]
            print_suite(suite, ResultsStore(results, read_only=True), scenarios, console)
        except ObliviateError as e:
            _fail(e)


__all__ = ["register"]
