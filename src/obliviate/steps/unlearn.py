"""Step "unlearn": one method applied to one artifact for one request (DESIGN.md, "Contracts").

A method whose loss goes non-finite (the unlearner's ``FloatingPointError``) or whose result has
a non-finite parameter or buffer raises :class:`~obliviate.errors.DivergenceError` naming the
method, the request and the step or tensor; nothing is saved then.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from obliviate.data import ForgetRequest, ImageDataset, Split
from obliviate.errors import DivergenceError
from obliviate.steps.artifacts import (
    ArtifactLike,
    RequestLike,
    as_artifact,
    check_starts_from,
    load_request,
    save_artifact,
)
from obliviate.train import evaluate
from obliviate.unlearn import Unlearner, create_unlearner, make_task
from obliviate.unlearn.artifact import ModelArtifact, format_of_model, format_of_path


@dataclass
class UnlearnOutcome:
    """The unlearned model (a new object), the method's stats and what the step used."""

    model: nn.Module
    stats: dict[str, Any]
    unlearner: Unlearner
    request: ForgetRequest
    #: Format-specific lines worth printing (e.g. SISA's shards retrained and cost saved).
    notes: list[str] = field(default_factory=list)
    #: Test, forget and retain accuracy of the saved model (empty when not saved).
    metrics: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    #: How messages name the saved artifact ("checkpoint", "SISA artifact").
    label: str = "checkpoint"


def unlearn_step(
    method: str | Unlearner,
    artifact: ArtifactLike,
    request: RequestLike,
    *,
    options: dict[str, Any] | None = None,
    seed: int = 0,
    device: str = "cpu",
    dataset: ImageDataset | None = None,
    split: Split | None = None,
    train_config: dict[str, Any] | None = None,
    out: str | os.PathLike[str] | None = None,
) -> UnlearnOutcome:
    """Unlearn ``request`` from ``artifact`` with ``method`` (a registered name built with
    ``options``, or an unlearner).

    Guarantees: the method fits the artifact's format (SISA needs an ensemble, other methods a
    network; else :class:`~obliviate.errors.ConfigError` before anything is loaded); the request
    is validated against ``split`` (default: the artifact's); the task carries ``train_config``
    (default: the one the artifact records) and ``seed``; the input model is not modified. With
    ``out`` the unlearned artifact is saved there (kind ``unlearned``, parent, request, method,
    params, seed and stats recorded) with its test/forget/retain accuracy. A diverging method
    (non-finite loss, or non-finite weights in its result) raises
    :class:`~obliviate.errors.DivergenceError` naming the method, the request and the step or
    the first non-finite tensor, before anything is saved.
    """
    u = method if isinstance(method, Unlearner) else create_unlearner(method, **(options or {}))
    name = method if isinstance(method, str) else u.name
    if isinstance(artifact, str | os.PathLike):
        check_starts_from(u, name, format_of_path(artifact), str(artifact))
    else:
        m = artifact.model if isinstance(artifact, ModelArtifact) else artifact
        check_starts_from(u, name, format_of_model(m), "the model")
    art = as_artifact(artifact, device, dataset=dataset, split=split)
    ds = art.dataset
    task_split = split if split is not None else art.split
    req = load_request(request, task_split)
    tc = train_config if train_config is not None else art.meta.get("train_config")
    task = make_task(ds, task_split, req, seed=seed, device=device, train_config=tc)
    where = f"request {req.hash[:12]} of {len(req)} ids"
    try:
        res = u.unlearn(art.model, task)
    except DivergenceError:
        raise
    except FloatingPointError as e:
        msg = str(e) if name in str(e) else f"method {name!r}: {e}"
        raise DivergenceError(f"{msg} (unlearning {where})", method=name) from e
    bad = first_nonfinite(res.model)
    if bad is not None:
        raise DivergenceError(
            f"method {name!r} produced non-finite weights (first: {bad}) unlearning {where}",
            method=name,
            tensor=bad,
        )
    outcome = UnlearnOutcome(
        res.model,
        res.stats,
        u,
        req,
        format_of_model(art.model).notes(art.model, res.stats),
        label=format_of_model(res.model).label,
    )
    if out is not None:
        outcome.metrics = evaluate(
            res.model, ds, art.split, parts=("test",), request=req, device=device
        )
        outcome.path = save_artifact(
            res.model,
            Path(out),
            split=art.split,
            dataset=ds,
            train_config=art.meta.get("train_config"),
            metrics=outcome.metrics,
            request=req,
            parent=str(art.path),
            kind="unlearned",
            extra={
                "unlearn": {
                    "method": name,
                    "params": u.get_params(),
                    "seed": seed,
                    "stats": res.stats,
                }
            },
        )
    return outcome


def first_nonfinite(model: nn.Module) -> str | None:
    """The name of ``model``'s first parameter or floating-point buffer holding a NaN or an
    infinity (``"parameter 'fc.weight'"``), or None when every one is finite."""
    for kind, named in (("parameter", model.named_parameters()), ("buffer", model.named_buffers())):
        for pname, t in named:
            if t.is_floating_point() and not bool(torch.isfinite(t.detach()).all()):
                return f"{kind} {pname!r}"
    return None


__all__ = ["UnlearnOutcome", "first_nonfinite", "unlearn_step"]
