"""Audit: every unlearning metric of a model against the gold retrain, in one report.

:func:`audit` computes, for the unlearned model and — side by side — the gold model (audited as
itself, so the reader sees the target) and the original model (when given):

* accuracy on forget / retain / test / validation, per-class test accuracy, and unlearn accuracy
  UA = 100 − forget accuracy (RURK, Hsu et al. NeurIPS 2025, Table 1; SalUn, Jia et al. 2023);
* MIA efficacy: SalUn's SVC attack (DESIGN.md "Definitions to share");
* a population / loss-threshold MIA (Yeom et al. 2018) — see :func:`audit` for what is reported;
* Avg. Gap to gold (RURK Table 1), for the unlearned AND the original model;
* residual knowledge r_τ (RURK Eq. 4) of the unlearned model over a τ grid;
* knowledge contamination (DESIGN.md; ROKA, arXiv 2603.00436), weight-space L2 distance and JS
  divergence on the forget set, all relative to gold;
* cost: step times and the speed-up over the gold retrain;
* optional: re-learn time (RURK) and offline LiRA (Carlini et al., S&P 2022).

A metric that cannot be computed is recorded as the string ``"skipped: <reason>"`` — never
``None`` and never dropped. Each model's logits on each set are computed once (batched, in
inference mode, on an inference copy of the model in ``channels_last`` with micro-batches, which
is ~3× faster for small CNNs on CPU) and reused by every metric.

Modules: :mod:`~obliviate.audit.entries` (the metric registry: keys, labels, formats, directions,
needs), :mod:`~obliviate.audit.config` (``AuditConfig``), :mod:`~obliviate.audit.core`
(``audit``), :mod:`~obliviate.audit.adapters` (one adapter per entry),
:mod:`~obliviate.audit.inference` (fast inference, the output cache),
:mod:`~obliviate.audit.report` (``AuditReport``), :mod:`~obliviate.audit.values` (skipped values,
key names).
"""

from obliviate.audit.config import AuditConfig
from obliviate.audit.core import audit, planned_entries, run_audit
from obliviate.audit.entries import (
    AUDIT_ENTRIES,
    AUDIT_METRICS,
    DEFAULT_METRICS,
    LEDGER_KEYS,
    OPTIONAL_METRICS,
    REPORT_KEYS,
    SUMMARY_KEYS,
    AuditEntry,
    KeySpec,
    audit_entries,
    entry_of,
    higher_is_better,
    key_spec,
    register_entry,
    report_columns,
)
from obliviate.audit.inference import FastInference
from obliviate.audit.report import AuditReport
from obliviate.audit.values import COLUMNS, NO_GOLD, SKIP, is_skipped, skipped, tau_key

__all__ = [
    "AUDIT_ENTRIES",
    "AUDIT_METRICS",
    "COLUMNS",
    "DEFAULT_METRICS",
    "LEDGER_KEYS",
    "NO_GOLD",
    "OPTIONAL_METRICS",
    "REPORT_KEYS",
    "SKIP",
    "SUMMARY_KEYS",
    "AuditConfig",
    "AuditEntry",
    "AuditReport",
    "FastInference",
    "KeySpec",
    "audit",
    "audit_entries",
    "entry_of",
    "higher_is_better",
    "is_skipped",
    "key_spec",
    "planned_entries",
    "register_entry",
    "report_columns",
    "run_audit",
    "skipped",
    "tau_key",
]
