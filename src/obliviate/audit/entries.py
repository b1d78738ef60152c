"""The audit's metric registry: each metric one entry that the audit, its table, the scenario
report, the results store and the request ledger all read.

An :class:`AuditEntry` names a metric (what ``audit(metrics=[...])`` picks), the result keys it
writes (:class:`KeySpec`: label, number format, direction, report column header; a key may be a
per-τ ``r_tau@{tau}/…`` or per-step ``time_s/{step}`` pattern), whether it needs the gold model or
the original, whether it runs by default, the entries whose values it reads, and its adapter
(:mod:`obliviate.audit.adapters`). Entries run, and their rows are printed, in registration
order. The Avg. Gap's inputs stay defined in :data:`obliviate.metrics.DEFAULT_GAP_KEYS` (metrics
sit below the audit); the registry checks at import that they are keys of the entries Avg. Gap
requires.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from obliviate.audit import adapters
from obliviate.audit.adapters import AuditRun
from obliviate.audit.values import NO_GOLD, skipped
from obliviate.errors import ConfigError
from obliviate.metrics import DEFAULT_GAP_KEYS
from obliviate.registry import Registry

Fmt = Literal["pct", "f2", "f3", "f4", "int", "relearn"]
#: Digits after the point of each number format (``int`` and ``relearn`` print integers).
DIGITS: dict[str, int] = {"pct": 2, "f2": 2, "f3": 3, "f4": 4, "int": 0, "relearn": 0}
_READ = {True: "↑", False: "↓", None: "ideal: gold"}
_VARIABLES = ("tau", "step")
Adapter = Callable[[AuditRun, "AuditEntry", "str | None"], None]


@dataclass(frozen=True)
class KeySpec:
    """One result key an entry writes, or a key pattern with ``{tau}`` (one key per τ of the
    audit) or ``{step}`` (one per extra timed step).

    ``label`` may use ``{k}`` (contamination_k), ``{tau}``, ``{perturbation}`` and ``{c}``;
    ``higher_is_better`` is ``None`` when the ideal is the gold model's value (or, with ``read``,
    some other target); ``read`` is the table's hint (default: ↑, ↓ or "ideal: gold");
    ``short`` the column header in the scenario report; ``shown=False`` keys are flags that
    another row's format reads (``relearn_time/capped``).
    """

    key: str
    label: str
    fmt: Fmt = "f3"
    higher_is_better: bool | None = None
    read: str | None = None
    short: str = ""
    shown: bool = True

    def __post_init__(self) -> None:
        if self.fmt not in DIGITS:
            raise ValueError(f"key {self.key!r}: unknown format {self.fmt!r}")

    @property
    def variable(self) -> str | None:
        """``"tau"`` or ``"step"`` for a pattern, else ``None``."""
        return next((v for v in _VARIABLES if "{" + v + "}" in self.key), None)

    @property
    def digits(self) -> int:
        return DIGITS[self.fmt]

    @property
    def reading(self) -> str:
        """How to read the value: the ``read`` hint, or the direction's arrow."""
        return self.read if self.read is not None else _READ[self.higher_is_better]

    @property
    def header(self) -> str:
        """Column header in the scenario report (``short``, else the label)."""
        return self.short or self.label

    def expand(self, *, tau: float | None = None, step: str | None = None) -> str:
        """The concrete key: ``r_tau@{tau}/mean`` with ``tau=0.03`` → ``r_tau@0.03/mean``."""
        if self.variable == "tau":
            if tau is None:
                raise ValueError(f"key pattern {self.key!r} needs tau")
            return self.key.replace("{tau}", f"{float(tau):g}")
        if self.variable == "step":
            if step is None:
                raise ValueError(f"key pattern {self.key!r} needs step")
            return self.key.replace("{step}", step)
        return self.key

    def match(self, key: str) -> dict[str, str] | None:
        """The variables of ``key`` if it is this spec's key (or an instance of its pattern)."""
        var = self.variable
        if var is None:
            return {} if key == self.key else None
        prefix, suffix = self.key.split("{" + var + "}")
        n = len(key) - len(suffix)
        if n > len(prefix) and key.startswith(prefix) and key.endswith(suffix):
            return {var: key[len(prefix) : n]}
        return None

    def title(self, config: Mapping[str, Any], tau: float | None = None, step: str = "") -> str:
        """The table label, filled in from an audit report's ``config`` (and the τ or step of a
        pattern's instance)."""
        k = config.get("contamination_k")
        return self.label.format(
            k="k" if k is None else k,
            tau="" if tau is None else f"{tau:g}",
            step=step,
            perturbation=config.get("perturbation", ""),
            c=config.get("c", ""),
        )


@dataclass(frozen=True)
class AuditEntry:
    """One audit metric: its name, the keys it writes, what it needs and its adapter.

    ``section`` groups its rows in the audit table; ``stage`` names its line in the report's
    ``info["seconds"]`` (entries sharing a stage add up; ``{perturbation}`` is filled in;
    ``None``: not timed); ``requires`` lists entries whose values it reads (run first, without
    being reported as chosen); ``why_original`` is the skip reason when ``needs_original`` and no
    original is given.
    """

    name: str
    section: str
    keys: tuple[KeySpec, ...]
    run: Adapter
    description: str
    default: bool = True
    needs_gold: bool = False
    needs_original: bool = False
    why_original: str = ""
    requires: tuple[str, ...] = ()
    stage: str | None = None

    def __post_init__(self) -> None:
        if self.needs_original and not self.why_original:
            raise ValueError(f"audit entry {self.name!r}: needs_original without why_original")

    def unmet(self, has_gold: bool, has_original: bool) -> str | None:
        """``"skipped: <why>"`` if the entry cannot run with the models given, else ``None``."""
        if self.needs_gold and not has_gold:
            return skipped(NO_GOLD)
        if self.needs_original and not has_original:
            return skipped(self.why_original)
        return None

    def owns(self, key: str) -> bool:
        """True if ``key`` is one of this entry's keys (or an instance of its patterns)."""
        return any(s.match(key) is not None for s in self.keys)


#: name → :class:`AuditEntry`, in the order the audit runs them and prints their rows.
AUDIT_ENTRIES: Registry[AuditEntry] = Registry("audit metric")
_ORDER: list[str] = []


def register_entry(entry: AuditEntry) -> AuditEntry:
    """Add ``entry`` to :data:`AUDIT_ENTRIES` (after every entry registered before it)."""
    unknown = [r for r in entry.requires if r not in AUDIT_ENTRIES]
    if unknown:
        raise ValueError(f"audit entry {entry.name!r} requires unregistered {unknown}")
    AUDIT_ENTRIES.register(entry.name, default=entry.default)(entry)
    _ORDER.append(entry.name)
    return entry


def audit_entries() -> list[AuditEntry]:
    """Every registered entry, in registration (run and table) order."""
    return [AUDIT_ENTRIES.get(n) for n in _ORDER]


def entry_of(key: str) -> AuditEntry:
    """The entry that writes result key ``key``; :class:`ConfigError` if none does."""
    for e in audit_entries():
        if e.owns(key):
            return e
    raise ConfigError(f"no audit metric writes the key {key!r}")


def key_spec(key: str) -> KeySpec:
    """The :class:`KeySpec` of result key ``key`` (patterns match their instances)."""
    for s in entry_of(key).keys:
        if s.match(key) is not None:
            return s
    raise AssertionError("unreachable")  # entry_of found an owner


def higher_is_better(key: str) -> bool | None:
    """Direction of result key ``key``: True, False, or None (ideal: gold's value)."""
    return key_spec(key).higher_is_better


# ----------------------------------------------------------------------------------- entries

_PCT_GOLD = {"fmt": "pct", "higher_is_better": None}
register_entry(AuditEntry(
    "accuracy", "accuracy", (
        KeySpec("acc/forget", "forget acc (%)", **_PCT_GOLD, short="Forget"),
        KeySpec("ua", "UA = 100 − forget acc (%)", **_PCT_GOLD, short="UA"),
        KeySpec("acc/retain", "retain acc (%)", "pct", True, short="Retain"),
        KeySpec("acc/test", "test acc (%)", "pct", True, short="Test"),
        KeySpec("acc/val", "val acc (%)", "pct", True, short="Val"),
    ), adapters.accuracy,
    "accuracy on forget / retain / test / val and UA = 100 − forget accuracy (RURK Table 1; "
    "SalUn); per-class test accuracy in details",
    stage="accuracy (incl. logits)",
))  # fmt: skip
register_entry(AuditEntry(
    "mia_efficacy", "MIA", (
        KeySpec("mia_efficacy", "MIA efficacy, SVC (%)", **_PCT_GOLD, short="MIA eff."),
    ), adapters.mia_efficacy,
    "SalUn's SVC MIA: % of forget called non-member (DESIGN.md)",
    stage="MIA (SVC + loss threshold)",
))  # fmt: skip
register_entry(AuditEntry(
    "population_mia", "MIA", (
        KeySpec("pop_mia/auc", "loss MIA AUC, retain vs test", "f3", False,
                read="↓ (0.5 = no leak)", short="loss-MIA AUC"),
        KeySpec("pop_mia/tpr@1%fpr", "loss MIA TPR @ 1% FPR", "f3", False),
        KeySpec("pop_mia/forget_member_rate", "loss MIA: forget as member (%)", **_PCT_GOLD),
        KeySpec("pop_mia/forget_auc", "loss MIA AUC, forget vs test", "f3", None),
    ), adapters.population_mia,
    "loss-threshold MIA (Yeom et al. 2018) calibrated on retain vs test, applied to forget",
    stage="MIA (SVC + loss threshold)",
))  # fmt: skip
register_entry(AuditEntry(
    "avg_gap", "vs gold", (
        KeySpec("avg_gap", "Avg. Gap to gold (pp)", "f2", False, read="↓ (0 = gold)",
                short="Avg. Gap ↓"),
    ), adapters.gap_to_gold,
    "mean |metric − gold| over DEFAULT_GAP_KEYS (RURK Table 1)",
    needs_gold=True, requires=("accuracy", "mia_efficacy"), stage="gap, distances",
))  # fmt: skip
register_entry(AuditEntry(
    "weight_distance", "vs gold", (KeySpec("weight_l2", "‖θ − θ_gold‖₂", "f3", False),),
    adapters.weight_l2, "L2 distance of the weights to gold's",
    needs_gold=True, stage="gap, distances",
))  # fmt: skip
register_entry(AuditEntry(
    "js_divergence", "vs gold", (
        KeySpec("js/forget", "JS divergence on forget (nats)", "f4", False),
    ), adapters.js_forget, "mean Jensen-Shannon divergence to gold's predictions on forget",
    needs_gold=True, stage="gap, distances",
))  # fmt: skip
register_entry(AuditEntry(
    "knowledge_contamination", "vs gold", (
        KeySpec("contamination/damage_nearest", "contamination: damage, {k} nearest (pp)",
                "f2", False, short="Damage, nearest"),
        KeySpec("contamination/damage_rest", "contamination: damage, rest (pp)", "f2", False),
        KeySpec("contamination/contrast", "contamination: nearest − rest (pp)", "f2", False),
    ), adapters.contamination,
    "test accuracy damage vs gold on the classes nearest the forget set (ROKA, arXiv "
    "2603.00436)",
    needs_gold=True, needs_original=True,
    why_original="no original model given (its penultimate features rank the classes)",
    stage="contamination",
))  # fmt: skip
register_entry(AuditEntry(
    "residual_knowledge", "residual knowledge", (
        KeySpec("r_tau@{tau}/mean", "r_τ mean (τ={tau}, {perturbation}, c={c})", "f3", None,
                read="ideal 1; >1 residual"),
        KeySpec("r_tau@{tau}/frac_gt1", "  frac. samples r > 1", "f3", False),
        KeySpec("r_tau@{tau}/n_excluded", "  excluded (0 gold hits)", "int", None, read=""),
        KeySpec("r_tau@{tau}/disagreement", "  disagreement", "f3", False),
    ), adapters.residual,
    "residual knowledge r_τ of the unlearned model over the τ grid (RURK Eq. 4)",
    needs_gold=True, stage="residual knowledge ({perturbation})",
))  # fmt: skip
register_entry(AuditEntry(
    "relearn_time", "optional", (
        KeySpec("relearn_time", "re-learn time (epochs)", "relearn", None),
        KeySpec("relearn_time/capped", "re-learn time capped", "int", None, shown=False),
    ), adapters.relearn,
    "epochs of fine-tuning on forget until its loss is within 5 % of the original's (RURK)",
    default=False, needs_original=True,
    why_original="needs the original model (its forget loss is the target)",
    stage="re-learn time",
))  # fmt: skip
register_entry(AuditEntry(
    "lira", "optional", (
        KeySpec("lira/auc", "LiRA AUC, forget vs test", "f3", None),
        KeySpec("lira/forget_score", "LiRA mean score on forget", "f3", None),
    ), adapters.lira,
    "offline LiRA (Carlini et al., S&P 2022) with OUT shadow models",
    default=False, stage="LiRA",
))  # fmt: skip
register_entry(AuditEntry(
    "cost", "cost", (
        KeySpec("time_s", "time (s)", "f2", False),
        KeySpec("speedup", "speed-up vs gold retrain (×)", "f2", True),
        KeySpec("time_s/{step}", "time: {step} (s)", "f2", False),
        KeySpec("speedup/{step}", "speed-up of {step} vs gold (×)", "f2", True),
    ), adapters.cost, "step times and the speed-up over the gold retrain",
))  # fmt: skip

#: What :func:`~obliviate.audit.audit` computes when ``metrics`` is None ("all applicable").
DEFAULT_METRICS: tuple[str, ...] = tuple(e.name for e in audit_entries() if e.default)
#: Computed only when named in ``metrics`` (they train models).
OPTIONAL_METRICS: tuple[str, ...] = tuple(e.name for e in audit_entries() if not e.default)
AUDIT_METRICS: tuple[str, ...] = DEFAULT_METRICS + OPTIONAL_METRICS


def _known(*keys: str) -> tuple[str, ...]:
    for k in keys:
        entry_of(k)
    return keys


#: Quality keys the results store summarises (mean ± std over seeds) by default, in its order.
SUMMARY_KEYS = _known("acc/retain", "acc/forget", "ua", "acc/test", "mia_efficacy", "avg_gap",
                      "contamination/damage_nearest")  # fmt: skip
#: Keys copied into each request-ledger entry.
LEDGER_KEYS = _known("acc/forget", "ua", "acc/retain", "acc/test", "mia_efficacy", "avg_gap")
#: Quality columns of the scenario report's metric table: the Avg. Gap and its inputs.
REPORT_KEYS = _known(*DEFAULT_GAP_KEYS, "avg_gap")


def report_columns(keys: tuple[str, ...] = REPORT_KEYS) -> tuple[tuple[str, str, int], ...]:
    """``(header, key, digits)`` of each key, as the scenario report's tables list them."""
    return tuple((key_spec(k).header, k, key_spec(k).digits) for k in keys)


def _check_gap_inputs() -> None:
    gap = AUDIT_ENTRIES.get("avg_gap")
    owners = {entry_of(k).name for k in DEFAULT_GAP_KEYS}
    if not owners <= set(gap.requires):
        raise ValueError(f"avg_gap reads keys of {sorted(owners)} but requires {gap.requires}")


_check_gap_inputs()

__all__ = [
    "AUDIT_ENTRIES",
    "AUDIT_METRICS",
    "DEFAULT_METRICS",
    "LEDGER_KEYS",
    "OPTIONAL_METRICS",
    "REPORT_KEYS",
    "SUMMARY_KEYS",
    "AuditEntry",
    "KeySpec",
    "audit_entries",
    "entry_of",
    "higher_is_better",
    "key_spec",
    "register_entry",
    "report_columns",
]
