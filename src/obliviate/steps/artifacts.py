"""Load and save model artifacts (a checkpoint or a SISA ensemble alike) and forget requests.

Every function dispatches through :data:`obliviate.unlearn.artifact.ARTIFACT_FORMATS`: the format
of a folder is read off its sidecar file, the format of a model off the object, and the format an
unlearner needs off its tags.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from obliviate.data import ForgetRequest, ImageDataset, Split
from obliviate.errors import ConfigError, RequestError
from obliviate.unlearn import Unlearner
from obliviate.unlearn.artifact import (
    ArtifactFormat,
    ModelArtifact,
    format_for_unlearner,
    format_of_model,
    format_of_path,
)

#: What a step accepts as a model: a loaded artifact, a module, or the folder of a saved one.
ArtifactLike = ModelArtifact | nn.Module | str | os.PathLike[str]
#: What a step accepts as a request: the request itself or its JSON file.
RequestLike = ForgetRequest | str | os.PathLike[str]


def load_artifact(
    path: str | os.PathLike[str],
    device: str = "cpu",
    *,
    dataset: ImageDataset | None = None,
    split: Split | None = None,
    allow_nonfinite: bool = False,
) -> ModelArtifact:
    """Load and verify the artifact folder ``path``, whatever its format.

    Guarantees: the model is in eval mode on ``device``; the artifact's split is ``split`` when
    one is given (else :class:`~obliviate.errors.CheckpointError`); its dataset is ``dataset``
    when given, else reloaded from the recorded source and verified by content on first use;
    weights holding NaN or ±inf are refused unless ``allow_nonfinite`` (an explicit opt-in).
    """
    p = Path(path)
    fmt = format_of_path(p)
    return fmt.load(p, dataset=dataset, split=split, device=device, allow_nonfinite=allow_nonfinite)


def save_artifact(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    split: Split,
    dataset: ImageDataset,
    train_config: dict[str, Any] | None = None,
    history: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    request: ForgetRequest | None = None,
    parent: str | None = None,
    kind: str = "trained",
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` to folder ``path`` atomically in its own format (a network as a
    checkpoint, a SISA ensemble as a SISA artifact) with the provenance the format records;
    :func:`load_artifact` reads it back."""
    return format_of_model(model).save(
        model,
        Path(path),
        split=split,
        dataset=dataset,
        train_config=train_config,
        history=history,
        metrics=metrics,
        request=request,
        parent=parent,
        kind=kind,
        extra=extra,
    )


def artifact_label(model: nn.Module) -> str:
    """How messages name ``model``'s artifact ("checkpoint", "SISA artifact")."""
    return format_of_model(model).label


def as_artifact(
    a: ArtifactLike,
    device: str = "cpu",
    *,
    dataset: ImageDataset | None = None,
    split: Split | None = None,
) -> ModelArtifact:
    """``a`` as a :class:`ModelArtifact`: loaded if a path; wrapped (no metadata, the given
    ``split`` and ``dataset``) if a module; returned as is if already one."""
    if isinstance(a, ModelArtifact):
        return a
    if isinstance(a, nn.Module):
        if split is None:
            raise ConfigError("a model passed without its artifact needs split= (and dataset=)")
        return ModelArtifact(Path(""), a, {}, split, format_of_model(a).name, dataset)
    return load_artifact(a, device, dataset=dataset, split=split)


def load_request(request: RequestLike, split: Split | None = None) -> ForgetRequest:
    """The request (read from JSON if a path), validated against ``split`` when given: distinct
    training ids, none in the reserve (else :class:`~obliviate.errors.RequestError`)."""
    req = request if isinstance(request, ForgetRequest) else ForgetRequest.load(request)
    return req if split is None else req.validate(split)


def resolve_request(request: RequestLike | None, *artifacts: ModelArtifact | None) -> ForgetRequest:
    """``request`` if given, else the first request an artifact records."""
    if request is not None:
        return load_request(request)
    rec = next((a.request for a in artifacts if a is not None and a.request is not None), None)
    if rec is None:
        raise RequestError(
            "no --request given and no checkpoint records one; pass --request R.json"
        )
    return rec


def check_starts_from(u: Unlearner, method: str, have: ArtifactFormat, where: str) -> None:
    """Refuse (:class:`ConfigError`) an unlearner whose artifact format is not ``have`` (the
    format of ``where``): SISA unlearns only an ensemble, other methods only a network."""
    need = format_for_unlearner(u.tags)
    if need.name == have.name:
        return
    if have.unlearner_tag is not None:
        raise ConfigError(have.refuses(method, where))
    raise ConfigError(need.required_by(method, where))


__all__ = [
    "ArtifactLike",
    "ModelArtifact",
    "RequestLike",
    "artifact_label",
    "as_artifact",
    "check_starts_from",
    "load_artifact",
    "load_request",
    "resolve_request",
    "save_artifact",
]
