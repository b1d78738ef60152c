"""``sisa``: exact unlearning on a SISA ensemble (Bourtoule et al., IEEE S&P 2021).

The model it takes is a :class:`~obliviate.unlearn.sisa.SisaEnsemble` — the artifact SISA
training produced (:func:`~obliviate.unlearn.sisa.train_sisa`,
:func:`~obliviate.unlearn.sisa.train_sisa_model`) — not a single network. Unlearning removes the
forget ids from their shards' slices and retrains only the affected shards, each from the
checkpoint saved *before* its first affected slice, on the remaining ids with the ensemble's own
recipe (config, seeds, epoch schedule); unaffected shards are untouched. The result equals SISA
training from scratch without those ids. See :mod:`obliviate.unlearn.sisa` for the deviations from
the official code.

Data: the ids to retrain on come from the ensemble; their images from the tensors the ensemble
stores (so the method is retain-free), or — for an ensemble loaded without data, or with
``data="task"`` — from ``task.retain``. Seeds are the ensemble's, not ``task.seed``.

The ensemble's artifact format (:class:`SisaFormat`, registered in
:data:`~obliviate.unlearn.artifact.ARTIFACT_FORMATS`) is what :mod:`obliviate.steps`, the scenario
runner and the CLI train, save, load and unlearn through: the ``save_sisa`` folder plus the
``split.json`` the ensemble was trained on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from obliviate import checkpoint
from obliviate._io import read_json
from obliviate.config import opt, validate_config
from obliviate.data import ForgetRequest, ImageDataset, Split
from obliviate.errors import CheckpointError, ConfigError, RequestError
from obliviate.train import TrainConfig
from obliviate.unlearn.artifact import (
    ARTIFACT_FORMATS,
    ArtifactFormat,
    ModelArtifact,
    TrainedArtifact,
)
from obliviate.unlearn.base import Unlearner, register_unlearner
from obliviate.unlearn.sisa import (
    META,
    SisaEnsemble,
    load_sisa,
    save_sisa,
    train_sisa,
    train_sisa_model,
)
from obliviate.unlearn.task import UnlearnTask

#: The split file written beside ``sisa.json`` (the split the ensemble was trained on).
SISA_SPLIT = "split.json"
#: Ensemble options of :meth:`SisaFormat.train` and their defaults.
ENSEMBLE_DEFAULTS: dict[str, Any] = {"shards": 5, "slices": 5, "aggregation": "vote"}


@dataclass
class SisaConfig:
    data: Literal["auto", "ensemble", "task"] = opt(
        "auto",
        "Where the images of the remaining ids come from: the tensors stored in the ensemble, "
        "the task's retain set, or auto (the ensemble's if it holds them, else the task's).",
    )
    show_progress: bool = opt(False, "Show a progress bar per retrained slice stage.")

    def __post_init__(self) -> None:
        validate_config(self)


@register_unlearner(
    "sisa",
    tags={"exact", "needs_ensemble"},
    paper="Bourtoule et al., Machine Unlearning, IEEE S&P 2021 (arXiv 1912.03817)",
)
class Sisa(Unlearner):
    """Retrain only the affected SISA shards from the checkpoint before the affected slice."""

    Config = SisaConfig
    #: Size of the ensemble :meth:`conformance_model` trains (small, for the conformance suite).
    conformance_shards: ClassVar[int] = 2
    conformance_slices: ClassVar[int] = 2

    def _unlearn(self, model: nn.Module, task: UnlearnTask) -> dict[str, Any]:
        c: SisaConfig = self.config  # type: ignore[assignment]
        if not isinstance(model, SisaEnsemble):
            raise ConfigError(
                f"sisa unlearns a SisaEnsemble (train one with obliviate.unlearn.sisa.train_sisa "
                f"or train_sisa_model), not a {type(model).__name__}"
            )
        if c.data == "ensemble" and model.data is None:
            raise ConfigError("data='ensemble' but the SISA ensemble holds no training tensors")
        use_task = c.data == "task" or (c.data == "auto" and model.data is None)
        if use_task and not task.has_retain:
            raise RequestError(
                "sisa: the ensemble holds no training tensors (loaded without data?) and the task "
                "has no retain set; retraining the affected shards needs the remaining images "
                "(load the artifact with dataset=, or give the task its retain set)"
            )
        retain = task.retain if use_task else None
        stats = model.unlearn_ids(
            task.forget.ids,
            retain=retain,
            device=task.device,
            show_progress=c.show_progress,
        )
        stats["data_source"] = "task" if use_task else "ensemble"
        return stats

    @classmethod
    def conformance_model(cls, model: nn.Module, task: UnlearnTask) -> nn.Module:
        """A small SISA ensemble (2 shards × 2 slices) of ``model``'s architecture, trained with
        the task's recipe on retain ∪ forget (this reads the task's retain set)."""
        cfg = TrainConfig(**task.train_config) if task.train_config else TrainConfig(epochs=4)
        r, f = task.retain, task.forget
        return train_sisa(
            torch.cat([r.x, f.x]),
            torch.cat([r.y, f.y]),
            torch.cat([r.ids, f.ids]),
            model,
            cfg,
            shards=cls.conformance_shards,
            slices=cls.conformance_slices,
            device=task.device,
        )


class SisaFormat(ArtifactFormat):
    """The SISA ensemble artifact: :func:`~obliviate.unlearn.sisa.save_sisa`'s folder (marked by
    ``sisa.json``) plus ``split.json``; the ``sisa`` unlearner (tag ``needs_ensemble``) needs it.
    Provenance fields a checkpoint records (kind, parent, request, metrics) are not stored."""

    name = "sisa"
    label = "SISA artifact"
    sidecar = META
    unlearner_tag = "needs_ensemble"

    def owns(self, model: nn.Module) -> bool:
        return isinstance(model, SisaEnsemble)

    def load(
        self,
        path: Path,
        *,
        dataset: ImageDataset | None,
        split: Split | None,
        device: str,
        allow_nonfinite: bool = False,
    ) -> ModelArtifact:
        """The ensemble with its training tensors taken from ``dataset`` (reloaded from the
        recorded source when not given); its split is ``split.json`` (or ``split`` for a folder
        written without one), which must be the split the ensemble records."""
        rec = read_json(
            path / META, f"SISA artifact {path}: {META}", CheckpointError, corrupt="is corrupt"
        )
        meta = (rec.get("meta") if isinstance(rec, dict) else None) or {}
        if dataset is None:
            if "dataset" not in meta:
                raise CheckpointError(
                    f"SISA artifact {path} records no dataset; use the library API"
                )
            dataset = checkpoint.dataset_for(meta)
        if (path / SISA_SPLIT).is_file():
            own = Split.load(path / SISA_SPLIT)
        elif split is not None:
            own = split
        else:
            raise CheckpointError(f"SISA artifact {path}: {SISA_SPLIT} is missing")
        if own.hash != meta.get("split_hash"):
            raise CheckpointError(
                f"SISA artifact {path}: {SISA_SPLIT} (hash {own.hash[:12]}) is not the split the "
                f"ensemble was trained on ({str(meta.get('split_hash'))[:12]})"
            )
        if split is not None and own.hash != split.hash:
            raise CheckpointError(
                f"SISA artifact {path} was trained on split {own.hash[:12]}, "
                f"expected split {split.hash[:12]}"
            )
        ens = load_sisa(path, dataset=dataset, device=device)
        return ModelArtifact(path, ens, dict(meta), own, self.name, dataset)

    def save(self, model: nn.Module, path: Path, *, split: Split, **_: Any) -> Path:
        if not isinstance(model, SisaEnsemble):
            raise ConfigError(f"a SISA artifact holds a SisaEnsemble, not {type(model).__name__}")
        save_sisa(model, path)
        split.save(path / SISA_SPLIT)
        return path

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
        """SISA training (``options``: shards, slices, aggregation); no metrics measured."""
        unknown = sorted(set(options) - set(ENSEMBLE_DEFAULTS))
        if unknown:
            raise ConfigError(
                f"unknown SISA ensemble option(s) {unknown}; known: {sorted(ENSEMBLE_DEFAULTS)}"
            )
        o = {**ENSEMBLE_DEFAULTS, **options}
        t0 = time.perf_counter()
        ens = train_sisa_model(
            dataset,
            split,
            model,
            config,
            shards=o["shards"],
            slices=o["slices"],
            aggregation=o["aggregation"],
            model_kwargs=model_kwargs,
            exclude=exclude,
            seed=seed,
            device=device,
            keep_data=False,
            show_progress=show_progress,
        )
        seconds = time.perf_counter() - t0
        stats = {"shards": o["shards"], "slices": o["slices"]}
        return TrainedArtifact(ens, seconds, config, stats=stats, request=exclude)

    def train_title(
        self, model: str, dataset: str, trained: TrainedArtifact, options: dict[str, Any]
    ) -> str:
        o = {**ENSEMBLE_DEFAULTS, **options}
        return f"SISA {o['shards']} shards × {o['slices']} slices of {model}"

    def refuses(self, method: str, path: str) -> str:
        return f"{path} is a SISA ensemble; only ensemble methods (sisa) unlearn it"

    def required_by(self, method: str, path: str) -> str:
        return (
            f"method {method!r} needs a SISA artifact (train one with `obliviate train "
            f"--sisa-shards S`); {path} is not one"
        )

    def notes(self, parent: nn.Module, stats: dict[str, Any]) -> list[str]:
        shards = parent.num_shards if isinstance(parent, SisaEnsemble) else "?"
        saved = stats["cost_saved_vs_full_sisa"]
        return [
            f"shards retrained: {stats['shards_retrained']}/{shards}; "
            f"{100 * saved:.0f} % of SISA retraining cost saved"
        ]


ARTIFACT_FORMATS.register("sisa")(SisaFormat())
