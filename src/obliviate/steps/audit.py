"""Step "audit": assemble the audit's inputs from artifacts, then :func:`obliviate.audit.audit`.

What the step adds to the audit itself: the artifacts must share one split; the request is the
one given or the one an artifact records, and the gold model must have been retrained without
exactly it; step times recorded in the artifacts become the audit's timings; and LiRA's shadow
models are trained with the gold model's own recipe (Carlini et al. 2022: shadows drawn from the
target's training distribution and procedure).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from obliviate.audit import AuditConfig, AuditReport, audit
from obliviate.data import ImageDataset, Split
from obliviate.errors import CheckpointError, RequestError
from obliviate.models import create_model
from obliviate.steps.artifacts import ArtifactLike, RequestLike, as_artifact, resolve_request
from obliviate.train import TrainConfig, fit
from obliviate.unlearn.artifact import ModelArtifact

ShadowTrainFn = Callable[[Tensor, Tensor, int], nn.Module]


def recorded_seconds(meta: dict[str, Any]) -> float | None:
    """Step time an artifact records: its unlearning (``unlearn.stats``) or its training."""
    u = meta.get("unlearn") if isinstance(meta.get("unlearn"), dict) else {}
    for d in (u.get("stats"), u, meta.get("stats"), meta.get("history")):
        if isinstance(d, dict) and isinstance(d.get("seconds"), int | float):
            return float(d["seconds"])
    return None


def shadow_trainer(recipe: dict[str, Any], device: str = "cpu") -> ShadowTrainFn | None:
    """``fn(x, y, seed)`` training a fresh model with the recipe an artifact records (its
    registered model and train config, the seed replaced), or None if it records none."""
    if not (recipe.get("model") and recipe.get("train_config")):
        return None

    def shadow_fn(x: Tensor, y: Tensor, seed: int) -> nn.Module:
        cfg = TrainConfig(**{**recipe["train_config"], "seed": seed})
        torch.manual_seed(seed)
        net = create_model(recipe["model"]["name"], **recipe["model"]["kwargs"])
        fit(net, x, y, cfg, device=device, show_progress=False)
        return net

    return shadow_fn


def check_same_split(arts: dict[str, ModelArtifact]) -> None:
    """Refuse (:class:`CheckpointError`) artifacts trained on different splits; the first entry
    is the reference."""
    names = list(arts)
    ref_name, ref = names[0], arts[names[0]]
    h0 = ref.split.hash
    bad = {k: a for k, a in arts.items() if a.split.hash != h0}
    if bad:
        listed = ", ".join(f"{k} {a.path} has split {a.split.hash[:12]}" for k, a in bad.items())
        raise CheckpointError(
            f"checkpoints were trained on different splits: {ref_name} {ref.path} has split "
            f"{h0[:12]}, but {listed}; an audit compares models on one split"
        )


def audit_step(
    unlearned: ArtifactLike,
    gold: ArtifactLike | None = None,
    original: ArtifactLike | None = None,
    *,
    request: RequestLike | None = None,
    dataset: ImageDataset | None = None,
    split: Split | None = None,
    seed: int = 0,
    device: str = "cpu",
    timings: dict[str, float] | None = None,
    out: str | os.PathLike[str] | None = None,
    **audit_kw: Any,
) -> AuditReport:
    """Audit ``unlearned`` against ``gold`` (and ``original``) on ``request``.

    ``audit_kw`` are :func:`obliviate.audit.audit`'s options (taus, perturbation, c, metrics,
    ...), passed unchanged. Guarantees: the models share one split (else
    :class:`~obliviate.errors.CheckpointError`); the request is ``request`` or the first one an
    artifact records, and a gold model that records a request was retrained without exactly it
    (else :class:`~obliviate.errors.RequestError`); ``timings`` are the seconds the artifacts
    record (unlearned → ``unlearn``, gold, original), updated by the ones given; when LiRA is
    asked for and no shadows are given, shadows follow the gold (else unlearned) artifact's
    recipe. With ``out`` the report is also saved there as JSON.
    """
    names = {f.name for f in dataclasses.fields(AuditConfig)}
    AuditConfig(  # refuse a bad option before any model is loaded
        seed=seed, device=device, **{k: v for k, v in audit_kw.items() if k in names}
    )
    given = {"unlearned": unlearned, "gold": gold, "original": original}
    arts = {
        k: as_artifact(a, device, dataset=dataset, split=split)
        for k, a in given.items()
        if a is not None
    }
    check_same_split(arts)
    art_u, art_g = arts["unlearned"], arts.get("gold")
    req = resolve_request(request, *arts.values())
    try:
        req.validate(art_u.split)  # name bad ids before comparing with gold's request
    except RequestError as e:
        where = f"request {request}" if isinstance(request, str | os.PathLike) else "request"
        raise RequestError(f"{where}: {e}") from None
    g_req = art_g.request if art_g is not None else None
    if g_req is not None and g_req.hash != req.hash:
        raise RequestError(
            f"gold {art_g.path if art_g else ''} was retrained without a different request "
            f"({len(g_req)} ids) than the one audited ({len(req)} ids); retrain gold on this "
            "request"
        )
    ds = art_u.dataset
    recorded: dict[str, float] = {}
    for step, key in (("unlearn", "unlearned"), ("gold", "gold"), ("original", "original")):
        s = recorded_seconds(arts[key].meta) if key in arts else None
        if s is not None:
            recorded[step] = s
    recorded.update(timings or {})
    metrics = audit_kw.get("metrics")
    if metrics and "lira" in metrics and audit_kw.get("shadow_train_fn") is None:
        fn = shadow_trainer((art_g or art_u).meta, device)
        if fn is not None:
            audit_kw["shadow_train_fn"] = fn
    report = audit(
        art_u.model,
        art_g.model if art_g is not None else None,
        arts["original"].model if "original" in arts else None,
        dataset=ds,
        split=art_u.split,
        request=req,
        seed=seed,
        device=device,
        timings=recorded or None,
        **audit_kw,
    )
    if out is not None:
        report.save(Path(out))
    return report


__all__ = ["audit_step", "check_same_split", "recorded_seconds", "shadow_trainer"]
