"""Healing-recipe sensitivity (issue 6): the healing suite's scenarios with 1-epoch healing under
other fine-tuning options (``HealConfig`` fields such as ``lr`` or ``schedule``), reusing the
suite's cached originals, gold retrains and unlearned models. Prints test accuracy Δ vs gold (pp)
per unlearning method and healing variant, one column per seed, and the mean.

Choose options on one seed and report the others (the table says which seeds it ran)::

    obliviate bench healing --cache .obliviate/suites/healing           # the suite (full size)
    python bench/healing_recipe.py --scenario healing-fashion_mnist-adversarial --seeds 0 \\
        --set lr=3e-4 --cache .obliviate/suites/healing
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from obliviate.scenarios import ResultsStore, load_suite, run_scenario

console = Console(width=170)


def _set(items: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for it in items:
        key, sep, value = it.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set expects KEY=VALUE, got {it!r}")
        try:
            out[key] = float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            out[key] = yaml.safe_load(value)  # strings and booleans
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--scenario", required=True, help="a healing-suite scenario name")
    p.add_argument("--seeds", default="0", help="comma-separated seeds")
    p.add_argument("--set", action="append", default=[], help="HealConfig field=value")
    p.add_argument("--all-variants", action="store_true", help="every pool and similarity")
    p.add_argument("--cache", type=Path, default=Path(".obliviate/suites/healing"))
    p.add_argument("--results", type=Path, default=Path(".obliviate/bench/healing_recipe.db"))
    a = p.parse_args()
    suite = {s.name: s for s in load_suite("healing", "full")}
    if a.scenario not in suite:
        raise SystemExit(f"unknown scenario {a.scenario!r}; known: {sorted(suite)}")
    scn = suite[a.scenario]
    spec = scn.defenses.healing
    assert spec is not None
    opts = {**spec.options, **_set(a.set)}
    heal = spec.model_copy(
        update={
            "pools": spec.pools if a.all_variants else ["twins", "none"],
            "similarities": spec.similarities if a.all_variants else ["pixel_l2", "feature_cosine"],
            "epochs": [1],
            "options": opts,
        }
    )
    seeds = [int(s) for s in a.seeds.split(",")]
    scn = scn.model_copy(
        update={"defenses": scn.defenses.model_copy(update={"healing": heal}), "seeds": seeds}
    )
    t0 = time.perf_counter()
    a.results.parent.mkdir(parents=True, exist_ok=True)
    run_scenario(scn, results=a.results, cache=a.cache, show_progress=False)
    rows = [r for r in ResultsStore(a.results).rows(scn.name) if r["seed"] in seeds]
    gold = {r["seed"]: r["metrics"]["acc/test"] for r in rows if r["method"] == "gold"}
    cells: dict[tuple[str, str], dict[int, float]] = {}
    for r in rows:
        if r["step"] == "heal" and r["info"].get("epochs") == 1:
            key = (r["method"], r["variant"])
            cells.setdefault(key, {})[r["seed"]] = r["metrics"]["acc/test"] - gold[r["seed"]]
    t = Table(title=f"{scn.name}: 1-epoch healing with {opts}; Δ test vs gold (pp)")
    for col in ["method", "variant", *[f"seed {s}" for s in seeds], "mean", "≥ gold − 0.5"]:
        t.add_column(col, justify="right")
    for (method, variant), by_seed in sorted(cells.items()):
        vals = [by_seed[s] for s in seeds if s in by_seed]
        mean = statistics.mean(vals)
        t.add_row(
            method,
            variant,
            *[f"{by_seed[s]:+.2f}" if s in by_seed else "—" for s in seeds],
            f"{mean:+.2f}",
            "yes" if mean >= -0.5 else "no",
        )
    console.print(t)
    console.print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
