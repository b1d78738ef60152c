"""Steps "load data", "train" and "retrain" (the gold model) of DESIGN.md's data flow."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from obliviate.data import ForgetRequest, ImageDataset, Split, load_dataset, make_split
from obliviate.steps.artifacts import (
    ArtifactLike,
    RequestLike,
    as_artifact,
    load_request,
    save_artifact,
)
from obliviate.train import TrainConfig, evaluate, retrain
from obliviate.unlearn.artifact import (
    ARTIFACT_FORMATS,
    DEFAULT_FORMAT,
    TrainedArtifact,
    format_of_model,
)


def prepare_data(
    dataset: str,
    *,
    root: str | None = None,
    classes: list[str] | None = None,
    split_seed: int = 0,
    test: str | int | float = "official",
    val: int | float = 0,
    reserve: int | float = 0,
    train: int | float | None = None,
    train_per_class: int | None = None,
) -> tuple[ImageDataset, Split]:
    """The dataset (from ``root`` for user-supplied ones; only ``classes`` if given) and its
    seeded split; same arguments, same split (:func:`obliviate.data.make_split`)."""
    ds = load_dataset(dataset, **({"root": root} if root else {}))
    if classes:
        ds = ds.select_classes(classes)
    split = make_split(
        ds,
        seed=split_seed,
        test=test,
        val=val,
        reserve=reserve,
        train=train,
        train_per_class=train_per_class,
    )
    return ds, split


def train_step(
    dataset: ImageDataset,
    split: Split,
    model: str,
    config: TrainConfig,
    *,
    artifact_format: str = DEFAULT_FORMAT,
    options: dict[str, Any] | None = None,
    model_kwargs: dict[str, Any] | None = None,
    exclude: ForgetRequest | None = None,
    seed: int | None = None,
    device: str = "cpu",
    show_progress: bool = True,
) -> TrainedArtifact:
    """Train registered model ``model`` on ``split.train`` minus ``exclude`` (the gold model when
    given) as an artifact of ``artifact_format`` (``checkpoint``: one network; ``sisa``: an
    ensemble, ``options`` shards/slices/aggregation). Same inputs and seeds, same weights."""
    return ARTIFACT_FORMATS.get(artifact_format).train(
        dataset,
        split,
        model,
        config,
        options=dict(options or {}),
        model_kwargs=model_kwargs,
        exclude=exclude,
        seed=seed,
        device=device,
        show_progress=show_progress,
    )


def train_to(
    out: str | os.PathLike[str],
    dataset: ImageDataset,
    split: Split,
    model: str,
    config: TrainConfig,
    *,
    artifact_format: str = DEFAULT_FORMAT,
    options: dict[str, Any] | None = None,
    device: str = "cpu",
    show_progress: bool = True,
) -> TrainedArtifact:
    """:func:`train_step`, then save the artifact to ``out``. The returned metrics are the
    training run's, or (for a format that measures none) train and test accuracy."""
    trained = train_step(
        dataset,
        split,
        model,
        config,
        artifact_format=artifact_format,
        options=options,
        device=device,
        show_progress=show_progress,
    )
    save_artifact(
        trained.model,
        Path(out),
        split=split,
        dataset=dataset,
        train_config=config.to_dict(),
        history=trained.history,
        metrics=trained.metrics,
    )
    if not trained.metrics:
        trained.metrics = evaluate(
            trained.model, dataset, split, parts=("train", "test"), device=device
        )
    return trained


def train_title(
    trained: TrainedArtifact, model: str, dataset: str, options: dict[str, Any] | None = None
) -> str:
    """One line saying what :func:`train_step` trained (e.g. ``small_cnn on mnist (3.1 s)``)."""
    return format_of_model(trained.model).train_title(model, dataset, trained, dict(options or {}))


def retrain_step(
    original: str | os.PathLike[str],
    request: RequestLike,
    *,
    out: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    show_progress: bool = True,
) -> TrainedArtifact:
    """The gold model: the checkpoint ``original``'s exact recipe (model, config, seeds) on
    train \\ ``request`` (:func:`obliviate.train.retrain`); saved to ``out`` (kind ``gold``,
    parent ``original``) when given."""
    req = load_request(request)
    tm = retrain(str(original), req, device=device, show_progress=show_progress)
    if out is not None:
        tm.save(str(out), kind="gold", parent=str(original))
    return TrainedArtifact(
        tm.model,
        tm.history.seconds,
        tm.config,
        tm.metrics,
        tm.history.to_dict(),
        {"metrics": tm.metrics},
        req,
    )


def evaluate_step(
    artifact: ArtifactLike, request: RequestLike | None = None, *, device: str = "cpu"
) -> dict[str, Any]:
    """Accuracy (percent) of the artifact on every non-empty part of its split, per class on
    test, and on the request's forget and retain sets when a request is given (validated)."""
    art = as_artifact(artifact, device)
    req = None if request is None else load_request(request, art.split)
    parts = [p for p, n in art.split.sizes().items() if n > 0]
    return evaluate(art.model, art.dataset, art.split, parts=parts, request=req, device=device)


__all__ = [
    "evaluate_step",
    "prepare_data",
    "retrain_step",
    "train_step",
    "train_title",
    "train_to",
]
