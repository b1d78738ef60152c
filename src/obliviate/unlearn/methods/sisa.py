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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from obliviate.config import opt
from obliviate.errors import ConfigError, RequestError
from obliviate.train import TrainConfig
from obliviate.unlearn.base import Unlearner, register_unlearner
from obliviate.unlearn.sisa import SisaEnsemble, train_sisa
from obliviate.unlearn.task import UnlearnTask


@dataclass
class SisaConfig:
    data: Literal["auto", "ensemble", "task"] = opt(
        "auto",
        "Where the images of the remaining ids come from: the tensors stored in the ensemble, "
        "the task's retain set, or auto (the ensemble's if it holds them, else the task's).",
    )
    show_progress: bool = opt(False, "Show a progress bar per retrained slice stage.")


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
