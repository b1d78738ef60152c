"""``obliviate run SCENARIO.yaml`` and ``obliviate bench SUITE``, added by :func:`register`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from obliviate.errors import ObliviateError


def _seeds(v: str | None) -> list[int] | None:
    if v is None:
        return None
    try:
        return [int(s) for s in v.split(",") if s.strip()]
    except ValueError:
        raise typer.BadParameter(f"--seeds expects comma-separated integers, got {v!r}") from None


_SET_HELP = (
    "Overlay KEY=VALUE on the scenario (dotted key, YAML value; repeatable), e.g. "
    "--set defenses.healing.options.lr=3e-4 --set methods.fisher.config.lambda_sigma2=1e-10."
)


def _print_result(res, store) -> None:  # type: ignore[no-untyped-def]
    from obliviate.cli import console

    console.print(store.summary(res.scenario))
    hits = sum(res.cache["hits"].values())
    misses = sum(res.cache["misses"].values())
    console.print(
        f"[bold]{res.scenario}[/]: {res.rows_written} rows written, {res.rows_skipped} already "
        f"stored; artifacts {hits} reused, {misses} computed; {res.seconds:.1f} s → "
        f"[bold]{res.store_path}[/]"
    )


def register(app: typer.Typer) -> None:
    """Add the ``run``, ``bench`` and ``report`` verbs to the ``obliviate`` app."""

    @app.command("report")
    def report(
        results: Annotated[Path, typer.Argument(help="Results store (SQLite file).")],
        out: Annotated[
            Path, typer.Option(help="Output folder: report.md, report.html, figures/.")
        ] = Path("report"),
        scenario: Annotated[str | None, typer.Option(help="Only this scenario.")] = None,
    ) -> None:
        """Write the Markdown and self-contained HTML report of a results store."""
        from obliviate.cli import _fail, console
        from obliviate.scenarios.report import report_from_store

        try:
            paths = report_from_store(results, out, scenario=scenario)
        except ObliviateError as e:
            _fail(e)
        console.print(f"{len(paths.images)} figures → [bold]{paths.markdown}[/]")
        console.print(f"HTML report: [bold]{paths.html}[/]")

    @app.command("run")
    def run(
        scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
        results: Annotated[Path, typer.Option(help="Results store (SQLite file).")] = Path(
            "obliviate-results.db"
        ),
        cache: Annotated[
            Path, typer.Option(help="Artifact cache folder (models, requests).")
        ] = Path(".obliviate-cache"),
        seeds: Annotated[
            str | None, typer.Option(help="Comma-separated seeds (overrides the file's).")
        ] = None,
        size: Annotated[
            str | None, typer.Option(help="A `sizes` overlay of the file (e.g. quick, full).")
        ] = None,
        device: Annotated[
            str | None, typer.Option(help="cpu, cuda, cuda:N or auto (overrides the file's).")
        ] = None,
        quiet: Annotated[bool, typer.Option(help="No progress bars or step log.")] = False,
        set_: Annotated[list[str] | None, typer.Option("--set", help=_SET_HELP)] = None,
    ) -> None:
        """Run a scenario: train, attack, retrain gold, unlearn, heal, audit; store every row."""
        from obliviate.cli import _fail, console
        from obliviate.scenarios import ResultsStore, load_scenario, run_scenario
        from obliviate.scenarios.overrides import apply_sets

        try:
            scn = apply_sets(load_scenario(scenario, size=size), set_ or [])
            store = ResultsStore(results)
            res = run_scenario(
                scn,
                results=store,
                cache=cache,
                seeds=_seeds(seeds),
                device=device,
                show_progress=not quiet,
                console=None if quiet else console,
            )
        except ObliviateError as e:
            _fail(e)
        _print_result(res, store)

    @app.command("bench")
    def bench(
        suite: Annotated[
            str, typer.Argument(help="Built-in suite: demo, healing, rurk, roka, ...")
        ],
        quick: Annotated[bool, typer.Option(help="The CI size (≤ 3 minutes per suite).")] = False,
        results: Annotated[Path, typer.Option(help="Results store (SQLite file).")] = Path(
            "obliviate-bench.db"
        ),
        cache: Annotated[Path, typer.Option(help="Artifact cache folder.")] = Path(
            ".obliviate-cache"
        ),
        seeds: Annotated[
            str | None, typer.Option(help="Comma-separated seeds (overrides the suite's).")
        ] = None,
        device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N or auto.")] = None,
        quiet: Annotated[bool, typer.Option(help="No progress bars or step log.")] = False,
        set_: Annotated[list[str] | None, typer.Option("--set", help=_SET_HELP)] = None,
    ) -> None:
        """Run every scenario of a built-in suite (quick or full size) into one results store."""
        from obliviate.cli import _fail, console
        from obliviate.scenarios import ResultsStore, load_suite, run_scenario
        from obliviate.scenarios.overrides import apply_sets, parse_sets

        try:
            sets = parse_sets(set_ or [])
            scenarios = [
                apply_sets(s, sets) for s in load_suite(suite, "quick" if quick else "full")
            ]
            store = ResultsStore(results)
            for scn in scenarios:
                console.rule(f"{suite}: {scn.name}")
                res = run_scenario(
                    scn,
                    results=store,
                    cache=cache,
                    seeds=_seeds(seeds),
                    device=device,
                    show_progress=not quiet,
                    console=None if quiet else console,
                )
                _print_result(res, store)
        except ObliviateError as e:
            _fail(e)


__all__ = ["register"]
