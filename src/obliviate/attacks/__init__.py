"""Attacks on unlearning: adversarial deletion requests (:mod:`~obliviate.attacks.requests`),
ROKA's indirect unlearning attack (:mod:`~obliviate.attacks.indirect`) and the
residual-knowledge probe (:mod:`~obliviate.attacks.probe`).

The input perturbations live in :mod:`obliviate.perturb` (a primitive below metrics and
attacks); their names are re-exported here for compatibility.
"""

from obliviate.attacks.indirect import (
    NEIGHBOUR_MEASURES,
    IndirectReport,
    IndirectSelection,
    indirect_attack_report,
    rank_neighbours,
    select_indirect,
)
from obliviate.attacks.probe import ProbeResult, probe
from obliviate.attacks.requests import REQUEST_STRATEGIES, RequestSelection, select_request
from obliviate.perturb import PERTURBATIONS, fgsm, gaussian, perturb, pgd, project, uniform

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
