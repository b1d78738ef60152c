"""Attacks: input perturbations (Gaussian / uniform / FGSM / PGD) and request selection."""

from obliviate.attacks.perturb import (
    PERTURBATIONS,
    fgsm,
    gaussian,
    perturb,
    pgd,
    project,
    uniform,
)

__all__ = ["PERTURBATIONS", "fgsm", "gaussian", "perturb", "pgd", "project", "uniform"]
