"""``audit()``: every registered audit metric of a model against the gold retrain, in one report.

The audit loads the request's sets, wraps each model in a cached fast-inference copy
(:mod:`obliviate.audit.inference`) and runs the registered entries (:mod:`obliviate.audit.entries`)
that were asked for, plus those they read, in registry order; each entry's adapter writes its
keys for every column it applies to. An entry whose gold or original model is missing records
the reason as ``"skipped: <reason>"`` for each of its keys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields
from typing import Any

import torch
from torch import Tensor, nn

from obliviate.audit.adapters import AuditRun
from obliviate.audit.config import AuditConfig
from obliviate.audit.entries import AUDIT_ENTRIES, AuditEntry, audit_entries
from obliviate.audit.inference import Outputs
from obliviate.audit.report import AuditReport, _jsonable
from obliviate.data.dataset import ImageDataset
from obliviate.data.request import ForgetRequest
from obliviate.data.split import Split
from obliviate.errors import ConfigError
from obliviate.metrics import Timer
from obliviate.metrics.mia import Feature
from obliviate.utils import resolve_device


def audit(
    unlearned: nn.Module,
    gold: nn.Module | None = None,
    original: nn.Module | None = None,
    *,
    dataset: ImageDataset,
    split: Split,
    request: ForgetRequest | Sequence[int],
    taus: float | Sequence[float] = (0.03,),
    perturbation: str = "gaussian",
    c: int | None = None,
    metrics: Iterable[str] | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    n_max_mia: int = 5000,
    mia_feature: Feature = "prob",
    residual_max_samples: int | None = None,
    contamination_k: int = 3,
    timings: Mapping[str, float] | None = None,
    attack_kw: Mapping[str, Any] | None = None,
    relearn_kw: Mapping[str, Any] | None = None,
    shadow_models: Sequence[nn.Module] | None = None,
    shadow_train_fn: Callable[[Tensor, Tensor, int], nn.Module] | None = None,
    lira_k: int = 4,
    micro_batch: int | None = None,
    title: str | None = None,
    config: AuditConfig | None = None,
) -> AuditReport:
    """Audit ``unlearned`` against the ``gold`` retrain (and the ``original``) on one request.

    Sets: forget = the request's ids; retain = train \\ forget; test; val (skipped if empty).
    Options come from ``config`` (an :class:`AuditConfig`) or, equally, from the keywords of the
    same names (not both); ``timings`` (seconds per step, e.g. ``{"unlearn": 3.1, "gold": 95.0}``;
    other steps get ``time_s/<step>``), ``shadow_models`` and ``shadow_train_fn`` (LiRA's OUT
    shadows, ``shadow_train_fn(x, y, seed)`` trained on seeded halves of the retain set) are
    inputs. ``metrics`` picks from :data:`AUDIT_METRICS` (default :data:`DEFAULT_METRICS`; LiRA
    and re-learn time only when named). Every value is a number or ``"skipped: <reason>"``.

    Definitions (DESIGN.md "Definitions to share"; each entry's ``description``):

    * MIA efficacy: SVC(C=3, gamma="auto", rbf) on ``mia_feature`` of a balanced seeded sample of
      up to ``n_max_mia`` retain (members) and test (non-members); % of forget called non-member.
    * Population MIA (loss threshold, score = −cross-entropy; Yeom et al. 2018), calibrated on
      all of retain (members) vs test (non-members): ROC AUC and TPR at 1 % FPR (Carlini et al.
      2022) there; ``forget_member_rate`` = % of forget at or above the Youden-J threshold of
      retain vs test, and ``forget_auc`` = AUC of forget vs the test samples of the forget set's
      classes (all test samples if none). For both the ideal is the gold model's value.
    * Avg. Gap: mean |·−gold| over retain acc, UA, test acc, MIA efficacy (RURK Table 1), for
      every column (gold's is 0 by construction; the original's is the baseline to beat).
    * r_τ (RURK Eq. 4) of the unlearned model at each τ with ``perturbation`` (``attack_kw``
      such as ``steps``/``alpha`` go to the attack), on at most ``residual_max_samples`` forget
      samples; skipped at a τ where every sample has zero gold hits.
    * Contamination: per-class test accuracy change vs gold on non-requested classes, ranked by
      cosine similarity of the original's penultimate class centroids to the forget set's;
      ``contamination_k`` nearest vs the rest. Needs gold and original.
    * Weight L2 distance and mean JS divergence on the forget set, to gold; cost and speed-up.
    * ``relearn_time`` (RURK; ``relearn_kw``; needs the original) and ``lira`` (offline LiRA,
      ``lira_k`` shadows): forget vs class-matched test AUC and mean score on forget.

    Models are not modified (inference runs on copies; ``micro_batch`` default 256 on CPU,
    1024 on CUDA). Deterministic for a given ``seed``.
    """
    given = {
        "taus": taus, "perturbation": perturbation, "c": c, "metrics": metrics, "seed": seed,
        "device": device, "n_max_mia": n_max_mia, "mia_feature": mia_feature,
        "residual_max_samples": residual_max_samples, "contamination_k": contamination_k,
        "attack_kw": attack_kw, "relearn_kw": relearn_kw, "lira_k": lira_k,
        "micro_batch": micro_batch, "title": title,
    }  # fmt: skip
    cfg = _options(config, given)
    return run_audit(
        unlearned, gold, original, dataset=dataset, split=split, request=request, config=cfg,
        timings=timings, shadow_models=shadow_models, shadow_train_fn=shadow_train_fn,
    )  # fmt: skip


def _options(config: AuditConfig | None, given: dict[str, Any]) -> AuditConfig:
    """``config``, or an :class:`AuditConfig` of the keyword options; refuses both at once."""
    from_kw = AuditConfig(**given)
    if config is None:
        return from_kw
    if not isinstance(config, AuditConfig):
        raise ConfigError(f"config must be an AuditConfig, got {type(config).__name__}")
    default = AuditConfig()
    clash = [
        f.name for f in fields(AuditConfig) if getattr(from_kw, f.name) != getattr(default, f.name)
    ]
    if clash:
        raise ConfigError(
            f"pass audit options either in config or as keywords, not both: got config and {clash}"
        )
    return config.validate()


def run_audit(
    unlearned: nn.Module,
    gold: nn.Module | None = None,
    original: nn.Module | None = None,
    *,
    dataset: ImageDataset,
    split: Split,
    request: ForgetRequest | Sequence[int],
    config: AuditConfig,
    timings: Mapping[str, float] | None = None,
    shadow_models: Sequence[nn.Module] | None = None,
    shadow_train_fn: Callable[[Tensor, Tensor, int], nn.Module] | None = None,
) -> AuditReport:
    """:func:`audit` with its options as one validated :class:`AuditConfig`."""
    cfg = config
    chosen = cfg.chosen()
    for name, m in (("unlearned", unlearned), ("gold", gold), ("original", original)):
        if m is not None and not isinstance(m, nn.Module):
            raise ConfigError(f"{name} must be a torch.nn.Module, got {type(m).__name__}")
    dev = resolve_device(cfg.device)
    mb = cfg.micro_batch or (1024 if dev.type == "cuda" else 256)
    req = request if isinstance(request, ForgetRequest) else ForgetRequest(request)
    split.check(dataset)
    req.validate(split)
    models = {"unlearned": unlearned, "gold": gold, "original": original}
    models = {col: m for col, m in models.items() if m is not None}
    stage: dict[str, float] = {}
    with Timer() as t_all:
        with Timer() as t:
            parts = {"forget": req.tensor}
            parts["retain"] = split.train[~torch.isin(split.train, req.tensor)]
            parts["test"], parts["val"] = split.test, split.val
            data = {p: dataset.tensors(ids) for p, ids in parts.items() if len(ids)}
        stage["load data"] = t.seconds
        run = AuditRun(
            cfg, models, data, Outputs(models, data, mb, dev), dev, mb, cfg.resolved_c(), chosen,
            dataset.class_names, timings, shadow_models, shadow_train_fn,
        )  # fmt: skip
        _run_entries(run, stage)
    stage = {k: s for k, s in stage.items() if s >= 0.0005 or k == "load data"}
    stage["total"] = t_all.seconds
    record = _config_record(run, req, split, dataset)
    info = {
        "sizes": {p: len(ids) for p, ids in parts.items()},
        "forget_classes": [dataset.class_names[k] for k in run.forget_classes],
        "seconds": stage,
    }
    return AuditReport(
        run.cols, run.values, _jsonable(run.details), _jsonable(record), _jsonable(info)
    )


def planned_entries(chosen: Iterable[str]) -> list[AuditEntry]:
    """The entries an audit of ``chosen`` runs: those and every entry they require, in registry
    order."""
    todo = set(chosen)
    stack = list(todo)
    while stack:
        for r in AUDIT_ENTRIES.get(stack.pop()).requires:
            if r not in todo:
                todo.add(r)
                stack.append(r)
    return [e for e in audit_entries() if e.name in todo]


def _run_entries(run: AuditRun, stage: dict[str, float]) -> None:
    """Run each planned entry's adapter; add its wall time to its stage."""
    has_gold, has_original = run.gold is not None, run.original is not None
    for entry in planned_entries(run.chosen):
        with Timer() as t:
            entry.run(run, entry, entry.unmet(has_gold, has_original))
        if entry.stage is not None:
            name = entry.stage.format(perturbation=run.cfg.perturbation)
            stage[name] = stage.get(name, 0.0) + t.seconds


def _config_record(
    run: AuditRun, req: ForgetRequest, split: Split, dataset: ImageDataset
) -> dict[str, Any]:
    """The report's ``config``: the options used and the identity of the data audited."""
    cfg, names, fc = run.cfg, run.class_names, run.forget_classes
    title = cfg.title or (
        f"audit: {len(req)} forget samples of "
        + (f"class {', '.join(names[k] for k in fc)}" if len(fc) <= 3 else f"{len(fc)} classes")
        + f" · split {split.hash[:12]}"
    )
    return {
        "title": title,
        "taus": list(cfg.taus),
        "perturbation": cfg.perturbation,
        "c": run.c,
        "attack_kw": dict(cfg.attack_kw),
        "seed": cfg.seed,
        "n_max_mia": cfg.n_max_mia,
        "mia_feature": cfg.mia_feature,
        "residual_max_samples": cfg.residual_max_samples,
        "contamination_k": cfg.contamination_k,
        "metrics": sorted(run.chosen),
        "device": str(run.device),
        "request": {"n": len(req), "name": req.name, "hash": req.hash},
        "split_hash": split.hash,
        "dataset": {"name": dataset.name, "fingerprint": dataset.fingerprint()},
        "timings": dict(run.timings or {}),
    }


__all__ = ["audit", "planned_entries", "run_audit"]
