"""Built-in suites (``obliviate bench SUITE --size quick|full|paper``): folders of scenario YAML
files shipped in the package under ``obliviate/scenarios/suites/<suite>/``.

Every file defines the three overlays of DESIGN.md "Sizes" in ``sizes:``: ``quick`` runs in CI
(≤ 2 minutes per suite on 2 cores), ``full`` is the CPU size (≤ 60 minutes per suite on 2 cores),
``paper`` the papers' sizes (for a GPU or a cluster). Files starting with ``_`` are shared bases
(``extends``), not scenarios.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from obliviate.errors import ConfigError, UnknownNameError
from obliviate.scenarios.schema import Scenario, ScenarioError, _read, load_scenario

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


def file_sizes(path: Path) -> list[str]:
    """The ``sizes`` overlays a scenario file defines (its ``extends`` chain merged)."""
    sizes = _read(path).data.get("sizes") or {}
    if not isinstance(sizes, dict):
        raise ScenarioError(f"{path}: sizes: expected {{size name: {{overlay}}}}")
    return sorted(sizes)


def load_suite(name: str, size: str = "full") -> list[Scenario]:
    """Validate and return the scenarios of suite ``name`` at ``size`` (:data:`SUITE_SIZES`);
    every file of a built-in suite must define all three overlays."""
    if size not in SUITE_SIZES:
        raise ConfigError(f"suite size must be one of {SUITE_SIZES}, got {size!r}")
    out = []
    for p in suite_files(name):
        missing = [s for s in SUITE_SIZES if s not in file_sizes(p)]
        if missing:
            raise ScenarioError(f"{p}: suite file lacks the size overlay(s) {missing}")
        out.append(load_scenario(p, size=size))
    return out


__all__ = ["SUITE_SIZES", "file_sizes", "list_suites", "load_suite", "suite_files"]
