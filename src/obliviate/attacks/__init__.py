"""Attacks: input perturbations (Gaussian / uniform / FGSM / PGD), adversarial deletion requests
(:mod:`~obliviate.attacks.requests`), ROKA's indirect unlearning attack
(:mod:`~obliviate.attacks.indirect`) and the residual-knowledge probe
(:mod:`~obliviate.attacks.probe`).

The perturbations are imported eagerly (metrics and defenses build on them); the other three
modules are loaded on first access of their names, because they build on metrics and unlearning
methods, which import the perturbations — eager imports here would be circular.
"""

from importlib import import_module
from typing import Any

from obliviate.attacks.perturb import (
    PERTURBATIONS,
    fgsm,
    gaussian,
    perturb,
    pgd,
    project,
    uniform,
)

_LAZY = {
    "NEIGHBOUR_MEASURES": "indirect",
    "IndirectReport": "indirect",
    "IndirectSelection": "indirect",
    "indirect_attack_report": "indirect",
    "rank_neighbours": "indirect",
    "select_indirect": "indirect",
    "ProbeResult": "probe",
    "probe": "probe",
    "REQUEST_STRATEGIES": "requests",
    "RequestSelection": "requests",
    "select_request": "requests",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(f"obliviate.attacks.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'obliviate.attacks' has no attribute {name!r}")


__all__ = [
    "NEIGHBOUR_MEASURES",
    "PERTURBATIONS",
    "REQUEST_STRATEGIES",
    "IndirectReport",
    "IndirectSelection",
    "ProbeResult",
    "RequestSelection",
    "fgsm",
    "gaussian",
    "indirect_attack_report",
    "perturb",
    "pgd",
    "probe",
    "project",
    "rank_neighbours",
    "select_indirect",
    "select_request",
    "uniform",
]
