"""Metric adapters: each turns one audit's cached outputs into the values of one registered entry.

Every adapter has the signature ``adapter(run, entry, unmet)``: it writes the keys ``entry``
declares into ``run.values[column]`` for the columns it applies to (and nested results into
``run.details``). ``unmet`` is the reason the entry cannot run (no gold model, no original) or
``None``; an adapter records it as the value of every key it would have written. Definitions:
DESIGN.md "Definitions to share" and :func:`obliviate.audit.audit`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from obliviate.audit.inference import FastInference, Outputs
from obliviate.audit.values import skipped
from obliviate.metrics import (
    MetricError,
    avg_gap,
    features_from_logits,
    gaps,
    js_divergence_from_logits,
    knowledge_contamination_from_outputs,
    lira_offline,
    mia_efficacy_from_logits,
    per_class_accuracy_from_predictions,
    population_mia_from_scores,
    relearn_time,
    residual_curve,
    speedup,
    train_shadow_models,
    weight_distance,
    youden_threshold,
)

if TYPE_CHECKING:
    from obliviate.audit.config import AuditConfig
    from obliviate.audit.entries import AuditEntry

#: The sets every audit draws from (forget is never empty: the request is validated).
PARTS = ("forget", "retain", "test", "val")
#: timing keys that belong to a column; any other key is an extra step (``time_s/<step>``).
_STEP_COLUMN = {
    "unlearn": "unlearned",
    "unlearned": "unlearned",
    "gold": "gold",
    "original": "original",
}


@dataclass
class AuditRun:
    """What every adapter of one audit reads (models, sets, cached outputs, options) and writes
    (``values`` per column, ``details``)."""

    cfg: AuditConfig
    models: dict[str, nn.Module]
    data: dict[str, tuple[Tensor, Tensor]]
    out: Outputs
    device: torch.device
    micro_batch: int
    c: int
    chosen: set[str]
    class_names: list[str]
    timings: Mapping[str, float] | None = None
    shadow_models: Sequence[nn.Module] | None = None
    shadow_train_fn: Callable[[Tensor, Tensor, int], nn.Module] | None = None
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    y: dict[str, Tensor] = field(init=False)
    forget_classes: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.values = {col: {} for col in self.models}
        self.y = {p: xy[1] for p, xy in self.data.items()}
        self.forget_classes = sorted(int(k) for k in torch.unique(self.y["forget"]))

    @property
    def cols(self) -> list[str]:
        return list(self.models)

    @property
    def gold(self) -> nn.Module | None:
        return self.models.get("gold")

    @property
    def original(self) -> nn.Module | None:
        return self.models.get("original")

    def empty(self, part: str) -> str:
        return skipped(f"the {part} set is empty")


def _try(fn: Callable[[], Any]) -> Any:
    """``fn()``, or ``"skipped: <reason>"`` when a metric says it cannot be computed."""
    try:
        return fn()
    except MetricError as e:
        return skipped(str(e))


def _pattern_sub(pattern: str) -> str:
    """The field of a per-τ key pattern: ``"r_tau@{tau}/mean"`` → ``"mean"``."""
    return pattern.rsplit("/", 1)[1]


# ------------------------------------------------------------------------- accuracy and MIAs


def accuracy(run: AuditRun, entry: AuditEntry, unmet: str | None) -> None:
    """Accuracy (%) on every set, UA = 100 − forget accuracy; per-class test accuracy in
    ``details`` when the entry was asked for (not when another entry only needs its values)."""
    for col in run.cols:
        v = run.values[col]
        for p in PARTS:
            if p not in run.data:
                v[f"acc/{p}"] = run.empty(p)
                continue
            v[f"acc/{p}"] = 100.0 * float((run.out.pred(col, p) == run.y[p]).double().mean())
        v["ua"] = 100.0 - v["acc/forget"]
    if entry.name not in run.chosen:
        return
    pc: dict[str, Any] = {}
    for col in run.cols:
        if "test" not in run.data:
            pc[col] = run.empty("test")
            continue
        acc = per_class_accuracy_from_predictions(run.out.pred(col, "test"), run.y["test"])
        pc[col] = {run.class_names[k]: a for k, a in acc.items()}
    run.details["per_class/test"] = pc


def _missing(run: AuditRun) -> list[str]:
    return [p for p in ("retain", "test") if p not in run.data]


def mia_efficacy(run: AuditRun, entry: AuditEntry, unmet: str | None) -> None:
    """SalUn's SVC MIA efficacy (%) of every column."""
    missing = _missing(run)
    cfg, out = run.cfg, run.out
    for col in run.cols:
        run.values[col]["mia_efficacy"] = (
            run.empty(missing[0])
            if missing
            else _try(
                lambda col=col: mia_efficacy_from_logits(
                    (out.logits(col, "retain"), run.y["retain"]),
                    (out.logits(col, "test"), run.y["test"]),
                    (out.logits(col, "forget"), run.y["forget"]),
                    feature=cfg.mia_feature,
                    n_max=cfg.n_max_mia,
                    seed=cfg.seed,
                )
            )
        )


def population_mia(run: AuditRun, entry: AuditEntry, unmet: str | None) -> None:
    """The loss-threshold MIA (Yeom et al. 2018) of every column."""
    keys = [k.key for k in entry.keys]
    missing = _missing(run)
    for col in run.cols:
        if missing:
            run.values[col].update(dict.fromkeys(keys, run.empty(missing[0])))
        else:
            run.values[col].update(_population_mia(run, col, keys))


def _population_mia(run: AuditRun, col: str, keys: list[str]) -> dict[str, Any]:
    def score(p: str) -> np.ndarray:
        return -features_from_logits(run.out.logits(col, p), run.y[p], "loss")

    s_r, s_t, s_f = score("retain"), score("test"), score("forget")
    res: dict[str, Any] = {}
    pm = _try(lambda: population_mia_from_scores(s_r, s_t))
    if isinstance(pm, str):
        return dict.fromkeys(keys, pm)
    res["pop_mia/auc"], res["pop_mia/tpr@1%fpr"] = pm.auc, pm.tpr_at_1pct_fpr
    thr = youden_threshold(s_r, s_t)
    res["pop_mia/forget_member_rate"] = 100.0 * float(np.mean(s_f >= thr))
    matched = torch.isin(run.y["test"], torch.as_tensor(run.forget_classes)).numpy()
    s_n = s_t[matched] if matched.any() else s_t
    fa = _try(lambda: population_mia_from_scores(s_f, s_n))
    res["pop_mia/forget_auc"] = fa if isinstance(fa, str) else fa.auc
    return res


# ------------------------------------------------------------------------------------ vs gold


def gap_to_gold(run: AuditRun, entry: AuditEntry, unmet: str | None) -> None:
    """Avg. Gap to gold of every column; its components in ``details``."""
    for col in run.cols:
        v = run.values[col]
        if unmet is not None:
            v["avg_gap"] = unmet
            continue
        v["avg_gap"] = _try(lambda v=v: avg_gap(v, run.values["gold"]))
        comp = _try(lambda v=v: gaps(v, run.values["gold"]))
        run.details.setdefault("avg_gap_components", {})[col] = comp


def weight_l2(run: AuditRun, entry: AuditEntry, unmet: str | None) -> None:
    """‖θ − θ_gold‖₂ of every column."""
    for col in run.cols:
        run.values[col]["weight_l2"] = (
            unmet
            if unmet is not None
            else _try(lambda m=run.models[col]: weight_distance(m, run.gold))
        )


def js_forget(run: AuditRun, entry: AuditEntry, unmet: str | None) -> None:
    """Mean JS divergence to gold's predictions on the forget set, every column."""
    out = run.out
    for col in run.cols:
        run.values[col]["js/forget"] = (
            unmet
            if unmet is not None
            else _try(
                lambda col=col: float(
                    js_divergence_from_logits(
                        out.logits(col, "forget"), out.logits("gold", "forget")
                    ).mean()
                )
            )
        )


def contamination(run: AuditRun, entry: AuditEntry, unmet: str | None) -> None:
    """Knowledge contamination (ROKA) of every column; its per-class table in ``details``."""
    run.details["contamination"] = {}
    for col in run.cols:
        res = unmet if unmet is not None else _contamination(run, col)
        v = run.values[col]
        if isinstance(res, str):
            for spec in entry.keys:
                v[spec.key] = res
            run.details["contamination"][col] = res
            continue
        d = res.to_dict()
        for row in d["table"]:
            row["class_name"] = run.class_names[row["class"]]
        for spec in entry.keys:
            v[spec.key] = d[_pattern_sub(spec.key)]
        run.details["contamination"][col] = d


def _contamination(run: AuditRun, col: str) -> Any:
    if "test" not in run.data:
        return run.empty("test")
    y_t = run.data["test"][1]
    out = run.out
    try:
        return knowledge_contamination_from_outputs(
            pred_unlearned=out.pred(col, "test"),
            pred_gold=out.pred("gold", "test"),
            y_test=y_t,
            requested_features=out.features("original", "forget"),
            ref_features=out.features("original", "test"),
            ref_y=y_t,
            requested_classes=run.forget_classes,
            k=run.cfg.contamination_k,
        )
    except MetricError as e:
        return skipped(str(e))


# --------------------------------------------------------------------------- residual knowledge


def residual(run: AuditRun, entry: AuditEntry, unmet: str | None) -> None:
    """r_τ (RURK Eq. 4) of the unlearned model at every τ; per-τ summaries in ``details``."""
    taus = run.cfg.taus
    res_list = [unmet] * len(taus) if unmet is not None else _residual(run)
    run.details["residual"] = res_list
    v = run.values["unlearned"]
    for tau, r in zip(taus, res_list, strict=True):
        for spec in entry.keys:
            v[spec.expand(tau=tau)] = r if isinstance(r, str) else r[_pattern_sub(spec.key)]


def _residual(run: AuditRun) -> list[Any]:
    cfg = run.cfg
    x_f, y_f = run.data["forget"]
    n = cfg.residual_max_samples
    if n is not None and len(x_f) > n:
        rng = np.random.default_rng(cfg.seed)
        idx = torch.as_tensor(np.sort(rng.choice(len(x_f), n, replace=False)))
        x_f, y_f = x_f[idx], y_f[idx]
    try:
        curve = residual_curve(
            run.out.fast["unlearned"], run.out.fast["gold"], x_f, y_f, cfg.taus,
            cfg.perturbation, run.c, cfg.seed, batch_size=2000, device=run.device,
            **dict(cfg.attack_kw),
        )  # fmt: skip
    except MetricError as e:
        return [skipped(str(e))] * len(cfg.taus)
    res = []
    for r in curve:
        d = r.to_dict()
        d["n_samples"] = len(x_f)
        res.append(d)
    return res


# ------------------------------------------------------------------------------------ optional


def relearn(run: AuditRun, entry: AuditEntry, unmet: str | None) -> None:
    """Re-learn time (RURK) of every column, against the original's forget loss."""
    x_f, y_f = run.data["forget"]
    for col in run.cols:
        v = run.values[col]
        if unmet is not None:
            v["relearn_time"] = unmet
            continue
        kw = {"seed": run.cfg.seed, "device": run.device, **dict(run.cfg.relearn_kw)}
        rr = _try(lambda m=run.models[col], kw=kw: relearn_time(m, run.original, x_f, y_f, **kw))
        if isinstance(rr, str):
            v["relearn_time"] = rr
        else:
            v["relearn_time"], v["relearn_time/capped"] = rr.epochs, rr.capped


def lira(run: AuditRun, entry: AuditEntry, unmet: str | None) -> None:
    """Offline LiRA (Carlini et al. 2022) of every column, with OUT shadow models."""
    keys = [k.key for k in entry.keys]
    reason = None
    if "test" not in run.data or "retain" not in run.data:
        reason = "LiRA needs retain and test data"
    elif run.shadow_models is None and run.shadow_train_fn is None:
        reason = (
            "LiRA needs OUT shadow models: pass shadow_models= or shadow_train_fn= "
            "(see obliviate.metrics.train_shadow_models)"
        )
    if reason:
        for col in run.cols:
            run.values[col].update(dict.fromkeys(keys, skipped(reason)))
        return
    fast_shadows = [FastInference(m, run.micro_batch, run.device) for m in _shadows(run)]
    x_q, y_q, mem, n_f = _lira_queries(run)
    for col in run.cols:
        r = _try(
            lambda col=col: lira_offline(
                run.out.fast[col], fast_shadows, x_q, y_q, membership=mem, device=run.device
            )
        )
        if isinstance(r, str):
            run.values[col].update(dict.fromkeys(keys, r))
            continue
        run.values[col]["lira/auc"] = r.auc if r.auc_skipped is None else skipped(r.auc_skipped)
        run.values[col]["lira/forget_score"] = float(r.score[:n_f].mean())


def _shadows(run: AuditRun) -> list[nn.Module]:
    shadows = list(run.shadow_models) if run.shadow_models is not None else []
    if not shadows:
        x_r, y_r = run.data["retain"]
        shadows = train_shadow_models(
            run.shadow_train_fn,  # type: ignore[arg-type]
            x_r, y_r, run.cfg.lira_k, 0.5, run.cfg.seed,
        )  # fmt: skip
    return shadows


def _lira_queries(run: AuditRun) -> tuple[Tensor, Tensor, Tensor, int]:
    """Forget (members) and up to ``n_max_mia`` class-matched test samples (non-members)."""
    x_f, y_f = run.data["forget"]
    x_t, y_t = run.data["test"]
    matched = torch.nonzero(torch.isin(y_t, torch.as_tensor(run.forget_classes))).squeeze(1)
    pool = matched if len(matched) else torch.arange(len(y_t))
    n_max = run.cfg.n_max_mia
    if len(pool) > n_max:
        rng = np.random.default_rng(run.cfg.seed)
        pool = pool[torch.as_tensor(np.sort(rng.choice(len(pool), n_max, replace=False)))]
    x_q = torch.cat([x_f, x_t[pool]])
    y_q = torch.cat([y_f, y_t[pool]])
    mem = torch.cat([torch.ones(len(x_f)), torch.zeros(len(pool))]).bool()
    return x_q, y_q, mem, len(x_f)


# ---------------------------------------------------------------------------------------- cost


def cost(run: AuditRun, entry: AuditEntry, unmet: str | None) -> None:
    """Step times per column and speed-ups over the gold retrain, from ``run.timings``."""
    values, cols = run.values, run.cols
    if not run.timings:
        why = skipped("no timings given (pass timings={'unlearn': s, 'gold': s})")
        values["unlearned"]["time_s"] = values["unlearned"]["speedup"] = why
        return
    t = {str(k): float(s) for k, s in run.timings.items()}
    gold_s = t.get("gold")
    for step, s in t.items():
        col = _STEP_COLUMN.get(step)
        if col is not None and col not in cols:
            continue
        base = "time_s" if col is not None else f"time_s/{step}"
        target = values[col or "unlearned"]
        target[base] = s if math.isfinite(s) and s >= 0 else skipped(f"bad time {s!r}")
        if col in ("gold", "original"):  # a speed-up is reported for unlearning steps only
            continue
        key = "speedup" if col is not None else f"speedup/{step}"
        if gold_s is None:
            target[key] = skipped("no gold retrain time in timings (key 'gold')")
        else:
            target[key] = _try(lambda s=s: speedup(s, gold_s))
    if "unlearned" in cols and "time_s" not in values["unlearned"]:
        values["unlearned"]["time_s"] = skipped("no unlearning time in timings (key 'unlearn')")
        values["unlearned"]["speedup"] = values["unlearned"]["time_s"]
