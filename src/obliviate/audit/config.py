"""``AuditConfig``: every option of :func:`obliviate.audit.audit`, a typed field with help text.

Definitions behind the options: DESIGN.md "Definitions to share". The models, data, request,
step timings and shadow models are the audit's inputs, not options, and stay arguments of
:func:`~obliviate.audit.audit`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from obliviate.audit.entries import AUDIT_ENTRIES, AUDIT_METRICS, DEFAULT_METRICS
from obliviate.config import SEED_MAX, opt, validate_config
from obliviate.errors import ConfigError
from obliviate.metrics import DEFAULT_C
from obliviate.metrics.mia import FEATURES, Feature
from obliviate.perturb import PERTURBATIONS

#: Largest ``c`` (perturbations per forget sample) an audit accepts: 100× the default; beyond it
#: r_τ's memory and time grow without changing the estimate.
C_MAX = 10_000


@dataclass
class AuditConfig:
    """Options of one audit. Construction normalises (a single τ becomes a list, a device its
    name) and :meth:`validate` refuses a bad value with an error naming the field."""

    taus: list[float] = opt(
        [0.03],
        "Perturbation levels τ of residual knowledge r_τ, in pixel units within [0, 1].",
        ge=0,
        le=1,
    )
    perturbation: str = opt(
        "gaussian", "r_τ perturbation (RURK Eq. 4): gaussian, uniform, fgsm or pgd."
    )
    c: int | None = opt(
        None, "Perturbations per forget sample for r_τ (None: 100 for gaussian/uniform, 20 for "
        "fgsm/pgd).", ge=1, le=C_MAX,
    )  # fmt: skip
    metrics: list[str] | None = opt(
        None, "Audit metrics to compute (None: every default metric; relearn_time and lira only "
        "when named)."
    )  # fmt: skip
    seed: int = opt(
        0, "Seed of the MIA sample, the perturbations and the shadow models.", ge=0, le=SEED_MAX
    )
    device: str = opt("cpu", "cpu, cuda, cuda:N or auto.")
    n_max_mia: int = opt(
        5000,
        "MIA samples per side: up to this many retain (members) and test (non-members).",
        ge=1,
    )
    mia_feature: Feature = opt(
        "prob", "Feature of SalUn's SVC MIA: prob (true-class softmax), entropy, m_entropy, loss."
    )
    residual_max_samples: int | None = opt(
        None, "Use at most this many forget samples (a seeded subset) for r_τ (None: all).", ge=1
    )
    contamination_k: int = opt(
        3,
        "Knowledge contamination: classes nearest the forget set summarised as 'nearest'.",
        ge=1,
    )
    attack_kw: dict[str, Any] = opt({}, "Options of the r_τ attack, e.g. steps and alpha for pgd.")
    relearn_kw: dict[str, Any] = opt(
        {}, "Options of re-learn time (obliviate.metrics.relearn_time), e.g. max_epochs."
    )
    lira_k: int = opt(4, "LiRA: OUT shadow models trained when none are given.", ge=1)
    micro_batch: int | None = opt(
        None, "Inference micro-batch (None: 256 on CPU, 1024 on CUDA).", ge=1
    )
    title: str | None = opt(None, "Title of the report's table (None: request and split).")

    def __post_init__(self) -> None:
        if isinstance(self.taus, int | float) and not isinstance(self.taus, bool):
            self.taus = [self.taus]
        if isinstance(self.taus, list | tuple):
            self.taus = [_number("taus", t) for t in self.taus]
        if self.metrics is not None and not isinstance(self.metrics, str):
            self.metrics = [str(m) for m in self.metrics]
        if not isinstance(self.device, str):
            self.device = str(self.device)
        self.attack_kw = dict(self.attack_kw or {})
        self.relearn_kw = dict(self.relearn_kw or {})
        self.validate()

    def validate(self) -> AuditConfig:
        """Raise :class:`ConfigError` naming the first field with a bad value; else ``self``."""
        if not isinstance(self.taus, list | tuple) or not self.taus:
            raise ConfigError(f"taus must name at least one tau, got {self.taus!r}")
        bad = [t for t in self.taus if not _real(t) or not 0.0 <= t <= 1.0]
        if bad:
            raise ConfigError(f"taus: every tau must lie in [0, 1] (pixel units), got {bad}")
        PERTURBATIONS.get(self.perturbation)
        self.chosen()
        if self.mia_feature not in FEATURES:
            raise ConfigError(f"mia_feature {self.mia_feature!r} is not one of {list(FEATURES)}")
        return validate_config(self)  # c, seed, counts, title: the ranges their opt declares

    def chosen(self) -> set[str]:
        """The metrics asked for (the defaults when ``metrics`` is None)."""
        if self.metrics is None:
            return set(DEFAULT_METRICS)
        chosen = set(self.metrics)
        bad = sorted(m for m in chosen if m not in AUDIT_ENTRIES)
        if bad:
            raise ConfigError(f"unknown audit metric(s) {bad}; choose from {list(AUDIT_METRICS)}")
        if not chosen:
            raise ConfigError(f"metrics names no metric; choose from {list(AUDIT_METRICS)}")
        return chosen

    def resolved_c(self) -> int:
        """``c``, or the perturbation's default (100 for gaussian/uniform, 20 for fgsm/pgd)."""
        return DEFAULT_C.get(self.perturbation, 100) if self.c is None else int(self.c)

    def to_dict(self) -> dict[str, Any]:
        """The options as a plain dict (JSON types)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _real(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _number(name: str, v: Any) -> float:
    if isinstance(v, bool):
        raise ConfigError(f"{name}: expected a number, got {v!r}")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected a number, got {v!r}") from None


__all__ = ["AuditConfig"]
