"""Model artifacts an unlearner starts from, behind one small interface.

DESIGN.md ("Contracts"): an unlearner takes any ``nn.Module`` that maps a batch to logits — except
SISA (Bourtoule et al., IEEE S&P 2021), which unlearns from the *ensemble artifact* SISA training
produced. An :class:`ArtifactFormat` says how one kind of artifact is trained, saved, loaded and
recognised (by the sidecar file in its folder, or by the model object), and which unlearners need
it (by tag). :mod:`obliviate.steps` dispatches through :data:`ARTIFACT_FORMATS`, so neither the
steps, the scenario runner nor the CLI branch on the kind of artifact.

The single checkpoint (:mod:`obliviate.checkpoint`) is the default format, registered here; SISA
registers its ensemble format next to its unlearner (:mod:`obliviate.unlearn.methods.sisa`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from obliviate import checkpoint
from obliviate.checkpoint import META, load_checkpoint, save_checkpoint
from obliviate.data import ForgetRequest, ImageDataset, Split
from obliviate.errors import ConfigError
from obliviate.registry import Registry
from obliviate.train import TrainConfig, train_model

#: Name of the default format (one network in a checkpoint folder).
DEFAULT_FORMAT = "checkpoint"


@dataclass
class ModelArtifact:
    """A loaded artifact: the model (eval mode), its recorded metadata and split, its format.

    ``dataset`` is the one given at load time, else reloaded on first access from the recorded
    source and verified by content (:func:`obliviate.checkpoint.dataset_for`).
    """

    path: Path
    model: nn.Module
    meta: dict[str, Any]
    split: Split
    format: str = DEFAULT_FORMAT
    _dataset: ImageDataset | None = field(default=None, repr=False)

    @property
    def dataset(self) -> ImageDataset:
        if self._dataset is None:  # looked up on the module, so that tests can stand one in
            self._dataset = checkpoint.dataset_for(self.meta)
        return self._dataset

    @property
    def request(self) -> ForgetRequest | None:
        """The forget request the artifact records that it honours (None if it records none)."""
        r = self.meta.get("request")
        return None if r is None else ForgetRequest(r["ids"], r.get("name", ""), r.get("meta"))


@dataclass
class TrainedArtifact:
    """What training an artifact gave: the model, seconds, metrics (may be empty: not measured),
    the training history (None if the format keeps none) and stats for the run's records."""

    model: nn.Module
    seconds: float
    config: TrainConfig
    metrics: dict[str, Any] = field(default_factory=dict)
    history: dict[str, Any] | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    #: The request left out of training (a gold retrain), or None.
    request: ForgetRequest | None = None


class ArtifactFormat:
    """One kind of model artifact. The base class is the default format: one network saved as a
    checkpoint folder (``meta.json`` + ``model.safetensors`` + ``split.json``). Subclasses
    override what differs and register an instance in :data:`ARTIFACT_FORMATS`."""

    name: str = DEFAULT_FORMAT
    #: How messages name an artifact of this format ("checkpoint", "SISA artifact").
    label: str = "checkpoint"
    #: The file whose presence in a folder marks an artifact of this format.
    sidecar: str = META
    #: Unlearners with this tag need an artifact of this format (None: any plain network).
    unlearner_tag: str | None = None

    def owns(self, model: nn.Module) -> bool:
        """Whether ``model`` is an artifact of this format (the default owns any module)."""
        return True

    def load(
        self,
        path: Path,
        *,
        dataset: ImageDataset | None,
        split: Split | None,
        device: str,
        allow_nonfinite: bool = False,
    ) -> ModelArtifact:
        """Load and verify the artifact at ``path``; ``split`` (if given) must be its split.
        Non-finite weights are refused unless ``allow_nonfinite``."""
        ck = load_checkpoint(
            path,
            expect_split_hash=None if split is None else split.hash,
            device=device,
            allow_nonfinite=allow_nonfinite,
        )
        return ModelArtifact(path, ck.model, ck.meta, ck.split, self.name, dataset)

    def save(
        self,
        model: nn.Module,
        path: Path,
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
        """Write ``model`` and its provenance to folder ``path`` atomically."""
        return save_checkpoint(
            path,
            model,
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

    def train(
        self,
        dataset: ImageDataset,
        split: Split,
        model: str,
        config: TrainConfig,
        *,
        options: dict[str, Any],
        model_kwargs: dict[str, Any] | None,
        exclude: ForgetRequest | None,
        seed: int | None,
        device: str,
        show_progress: bool,
    ) -> TrainedArtifact:
        """Train registered model ``model`` on ``split.train`` minus ``exclude`` with ``config``
        (its seed; ``seed`` is for formats with their own seeding) and the format's ``options``."""
        if options:
            raise ConfigError(f"the {self.label} format takes no options, got {sorted(options)}")
        tm = train_model(
            dataset,
            split,
            model,
            config,
            model_kwargs=model_kwargs,
            exclude=exclude,
            device=device,
            show_progress=show_progress,
        )
        return TrainedArtifact(
            tm.model,
            tm.history.seconds,
            config,
            tm.metrics,
            tm.history.to_dict(),
            {"metrics": tm.metrics, "steps": tm.history.steps},
            exclude,
        )

    def train_title(
        self, model: str, dataset: str, trained: TrainedArtifact, options: dict[str, Any]
    ) -> str:
        """One line that says what was trained (the CLI's table title)."""
        return f"{model} on {dataset} ({trained.seconds:.1f} s)"

    def refuses(self, method: str, path: str) -> str:
        """Why an unlearner that needs another format cannot start from this artifact."""
        return f"method {method!r} cannot unlearn {path}, a {self.label}"

    def required_by(self, method: str, path: str) -> str:
        """Why ``method``, which needs this format, cannot start from ``path``."""
        return f"method {method!r} needs a {self.label}; {path} is not one"

    def notes(self, parent: nn.Module, stats: dict[str, Any]) -> list[str]:
        """Lines worth printing after unlearning ``parent`` (format-specific cost, ...)."""
        return []


ARTIFACT_FORMATS: Registry[ArtifactFormat] = Registry("artifact format")
ARTIFACT_FORMATS.register(DEFAULT_FORMAT)(ArtifactFormat())


def _special() -> list[ArtifactFormat]:
    return [ARTIFACT_FORMATS.get(n) for n in ARTIFACT_FORMATS.names() if n != DEFAULT_FORMAT]


def format_of_model(model: nn.Module) -> ArtifactFormat:
    """The format ``model`` belongs to (the default for any plain network)."""
    return next((f for f in _special() if f.owns(model)), ARTIFACT_FORMATS.get(DEFAULT_FORMAT))


def format_of_path(path: str | os.PathLike[str]) -> ArtifactFormat:
    """The format of the artifact folder ``path``, read off its sidecar file (the default when
    none matches, so that loading a missing or broken folder reports the checkpoint's error)."""
    p = Path(path)
    return next(
        (f for f in _special() if (p / f.sidecar).is_file()), ARTIFACT_FORMATS.get(DEFAULT_FORMAT)
    )


def format_for_unlearner(tags: frozenset[str] | set[str]) -> ArtifactFormat:
    """The format an unlearner with ``tags`` starts from (the default unless a format claims one
    of the tags)."""
    return next(
        (f for f in _special() if f.unlearner_tag in tags), ARTIFACT_FORMATS.get(DEFAULT_FORMAT)
    )


__all__ = [
    "ARTIFACT_FORMATS",
    "DEFAULT_FORMAT",
    "ArtifactFormat",
    "ModelArtifact",
    "TrainedArtifact",
    "format_for_unlearner",
    "format_of_model",
    "format_of_path",
]
