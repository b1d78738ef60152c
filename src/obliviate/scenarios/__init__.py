"""Scenarios (issue 7): a YAML file chains DESIGN.md's steps; the runner caches every artifact by
the hash of what produced it and stores one row per (scenario, step, method, variant, seed).

>>> from obliviate.scenarios import load_scenario, run_scenario, ResultsStore  # doctest: +SKIP
>>> run_scenario("scn.yaml", results="results.db", cache=".obliviate-cache")  # doctest: +SKIP
>>> ResultsStore("results.db").rows("my-scenario")                             # doctest: +SKIP
"""

from obliviate.scenarios.cache import ArtifactCache
from obliviate.scenarios.runner import (
    DEFENSES,
    REQUEST_SOURCES,
    RunResult,
    derive_seed,
    run_scenario,
)
from obliviate.scenarios.schema import Scenario, ScenarioError, load_scenario, scenario_from_yaml
from obliviate.scenarios.store import ResultsStore, summarize, summary_table
from obliviate.scenarios.suites import SUITE_SIZES, list_suites, load_suite, suite_files

__all__ = [
    "DEFENSES",
    "REQUEST_SOURCES",
    "SUITE_SIZES",
    "ArtifactCache",
    "ResultsStore",
    "RunResult",
    "Scenario",
    "ScenarioError",
    "derive_seed",
    "list_suites",
    "load_scenario",
    "load_suite",
    "run_scenario",
    "scenario_from_yaml",
    "suite_files",
    "summarize",
    "summary_table",
]
