"""Built-in suites (``obliviate bench SUITE [--quick]``): folders of scenario YAML files shipped in
the package under ``obliviate/scenarios/suites/<suite>/``.

Every file defines ``sizes: {quick: {...}, full: {...}}`` overlays: ``quick`` is the CI size
(issue 7: ≤ 3 minutes per suite on 2 cores), ``full`` the size of the benchmark tables (≤ 60
minutes per suite). Files starting with ``_`` are shared bases (``extends``), not scenarios.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from obliviate.errors import ConfigError, UnknownNameError
from obliviate.scenarios.schema import Scenario, load_scenario

SUITE_SIZES = ("quick", "full", "paper")


def _root() -> Path:
    return Path(str(resources.files("obliviate.scenarios") / "suites"))


def list_suites() -> list[str]:
    """Names of the built-in suites."""
    root = _root()
    return sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*.yaml")))


def suite_files(name: str) -> list[Path]:
    """The scenario files of suite ``name`` (shared ``_*.yaml`` bases excluded), sorted."""
    folder = _root() / name
    if not folder.is_dir():
        raise UnknownNameError(f"unknown suite {name!r}; known: {', '.join(list_suites())}")
    return sorted(p for p in folder.glob("*.yaml") if not p.name.startswith("_"))


def load_suite(name: str, size: str = "full") -> list[Scenario]:
    """Validate and return the scenarios of suite ``name`` at ``size`` (quick or full)."""
    if size not in SUITE_SIZES:
        raise ConfigError(f"suite size must be one of {SUITE_SIZES}, got {size!r}")
    return [load_scenario(p, size=size) for p in suite_files(name)]


__all__ = ["SUITE_SIZES", "list_suites", "load_suite", "suite_files"]
