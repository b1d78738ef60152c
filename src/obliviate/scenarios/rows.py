"""The rows a scenario run writes: audit → row, row keys and hashes, and failed rows.

Row format: the one at the top of :mod:`obliviate.scenarios.store`.

Failed rows. A method that diverges while unlearning request ``i`` (its loss or the weights it
produced are not finite: :class:`~obliviate.errors.DivergenceError` from
:func:`obliviate.steps.unlearn_step`) gets, in place of its ``unlearn`` row (same row key),
a row whose ``metrics`` is ``{"failed": "method 'm' diverged at request i: <error>"}`` and whose
``info`` carries the error. In a sequence the method is then dropped: every later request gets a
failed row ``{"failed": "skipped: method 'm' diverged at request i"}`` (its versions
``v_{i+2}``… do not exist). Independent requests are alternatives unlearned from ``v0``, so
there a divergence on one request does not drop the method from the others. A failed method has
no ledger entry (no model version was produced) and no ``heal`` rows (nothing to heal).

A failed row is keyed by ``config_hash`` like any row: a hash over the key of the unlearned
artifact that could not be produced (method, params, seed, parent and request keys). The same
config and seed diverge the same way, so a rerun keeps the failed row and does not retry the
method (counted as skipped); a changed method config or parent has another hash, so it is
retried, and a success replaces the failed row.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from torch import nn

from obliviate import steps
from obliviate._io import hash_parts
from obliviate.errors import DivergenceError
from obliviate.report.aggregate import FAILED
from obliviate.scenarios.context import Artifact, RunContext, StepRequest, plain
from obliviate.scenarios.schema import MethodSpec, canonical_json
from obliviate.scenarios.store import LEDGER_KEY


def audit_hash(ctx: RunContext, *keys: str) -> str:
    """The ``config_hash`` of a row: the audit options, the seed and the models' keys."""
    return hash_parts(
        canonical_json(ctx.scenario.audit.model_dump(mode="json")), str(ctx.seed), *keys
    )[:32]


def audit(ctx: RunContext, model: nn.Module, gold: Artifact, original: Artifact,
          req: StepRequest, timings: dict[str, float]) -> Any:  # fmt: skip
    """:func:`obliviate.steps.audit_step` of ``model`` vs ``gold`` on the cumulative request."""
    return steps.audit_step(
        model,
        gold.model,
        original.model,
        request=req.cumulative,
        dataset=ctx.dataset,
        split=ctx.split,
        seed=ctx.seed,
        device=ctx.device,
        timings=timings,
        **ctx.scenario.audit.options(),
    )


def metrics_of(report: Any, col: str) -> dict[str, Any]:
    """The metrics of column ``col`` of an audit report, with its per-class test accuracy."""
    m = dict(report.values[col])
    pc = report.details.get("per_class/test", {})
    if isinstance(pc, dict) and col in pc:
        m["per_class/test"] = pc[col]
    return m


def make_row(ctx: RunContext, step: str, req: StepRequest, method: str, variant: str,
             config_hash: str, metrics: dict[str, Any], seconds: float, speedup: float | None,
             info: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """A results-store row of this seed's run."""
    return {
        "scenario": ctx.scenario.name,
        "step": step,
        "step_index": req.index,
        "method": method,
        "variant": variant,
        "seed": ctx.seed,
        "config_hash": config_hash,
        "metrics": metrics,
        "timings": {"seconds": float(seconds), "speedup": speedup},
        "info": plain({"class_names": list(ctx.dataset.class_names), **info}),
        "versions": ctx.versions,
        "created": time.time(),
    }


def row_key(ctx: RunContext, step: str, req: StepRequest, method: str, variant: str) -> dict:
    """The unique key of a row (:data:`obliviate.scenarios.store.ROW_KEY`)."""
    return {
        "scenario": ctx.scenario.name,
        "step": step,
        "step_index": req.index,
        "method": method,
        "variant": variant,
        "seed": ctx.seed,
    }


def put_row(ctx: RunContext, row: dict[str, Any]) -> None:
    """Store ``row``, count it and emit a ``"row"`` event."""
    ctx.store.put_row(row)
    ctx.counts["written"] += 1
    ctx.emit("row", step=row["step"], method=row["method"], variant=row["variant"],
             step_index=row["step_index"])  # fmt: skip


def req_info(req: StepRequest) -> dict[str, Any]:
    """What a row records of its request."""
    return {
        "request": {**req.info, "hash": req.request.hash},
        "request_size": len(req.request),
        "cumulative_size": len(req.cumulative),
    }


# ---------------------------------------------------------------------------- failed rows


@dataclass(frozen=True)
class Failure:
    """Method ``method`` diverged at request ``index``; ``config_hash`` of its failed row."""

    method: str
    index: int
    config_hash: str

    @property
    def skip_reason(self) -> str:
        return f"skipped: method {self.method!r} diverged at request {self.index}"


def failed_hash(ctx: RunContext, unlearned_key: str) -> str:
    """The ``config_hash`` of the failed row of the unlearned artifact ``unlearned_key``."""
    return hash_parts("failed", str(ctx.seed), unlearned_key)[:32]


def stored_failure(ctx: RunContext, method: MethodSpec, req: StepRequest,
                   unlearned_key: str) -> Failure | None:  # fmt: skip
    """The failure already stored for ``method`` at ``req`` with this config (a rerun), counted
    as a skipped row; None when there is none."""
    h = failed_hash(ctx, unlearned_key)
    if not ctx.store.has_row(row_key(ctx, "unlearn", req, method.key, ""), h):
        return None
    ctx.counts["skipped"] += 1
    ctx.log(f"req {req.index} · unlearn {method.key}: failed in an earlier run (kept)")
    return Failure(method.key, req.index, h)


def failed_row(ctx: RunContext, method: MethodSpec, req: StepRequest, unlearned_key: str,
               error: DivergenceError, seconds: float) -> Failure:  # fmt: skip
    """Store the failed ``unlearn`` row of ``method`` at ``req`` and log it."""
    reason = f"method {method.key!r} diverged at request {req.index}: {error}"
    h = failed_hash(ctx, unlearned_key)
    info = {
        **req_info(req),
        "unlearner": method.name,
        "params": method.config,
        "error": {"type": type(error).__name__, "message": str(error), "tensor": error.tensor},
    }
    _put_failed(ctx, make_row(ctx, "unlearn", req, method.key, "", h, {FAILED: reason}, seconds,
                              None, info))  # fmt: skip
    ctx.log(f"[red]req {req.index} · unlearn {method.key}: FAILED[/] {reason}")
    return Failure(method.key, req.index, h)


def _put_failed(ctx: RunContext, row: dict[str, Any]) -> None:
    """Store a failed row, count it, and drop a ledger entry of the same request and method that
    an earlier run (another config) may have left: no model version exists for it now."""
    put_row(ctx, row)
    ctx.counts["failed"] = ctx.counts.get("failed", 0) + 1
    ctx.store.delete_ledger({k: row[k] for k in LEDGER_KEY})


def skipped_row(ctx: RunContext, method: MethodSpec, req: StepRequest, failure: Failure) -> None:
    """The failed row of a request after the one where ``method`` diverged (it is not run)."""
    h = hash_parts("skipped", failure.config_hash, req.key)[:32]
    if ctx.store.has_row(row_key(ctx, "unlearn", req, method.key, ""), h):
        ctx.counts["skipped"] += 1
        return
    info = {**req_info(req), "unlearner": method.name, "params": method.config,
            "failed_at_request": failure.index}  # fmt: skip
    _put_failed(ctx, make_row(ctx, "unlearn", req, method.key, "", h,
                              {FAILED: failure.skip_reason}, 0.0, None, info))  # fmt: skip
    ctx.log(f"req {req.index} · unlearn {method.key}: {failure.skip_reason}")


__all__ = [
    "Failure",
    "audit",
    "audit_hash",
    "failed_hash",
    "failed_row",
    "make_row",
    "metrics_of",
    "put_row",
    "req_info",
    "row_key",
    "skipped_row",
    "stored_failure",
]
