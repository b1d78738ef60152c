"""``retrain``: the gold standard — the original's recipe (architecture, config, seeds) on retain.

Exact unlearning by definition (DESIGN.md "gold model"): the forget set has never been seen. The
architecture is re-created and trained from scratch on ``task.retain`` with the original's
:class:`~obliviate.train.TrainConfig` (``task.train_config``) through the one training loop
:func:`obliviate.train.fit`, with ``task.val`` as validation data (used only if the recipe early-
stops). How the architecture is re-created:

* a registered model (it carries ``obliviate_spec``): ``torch.manual_seed(seed)`` then
  ``create_model(name, **kwargs)`` — exactly what :func:`obliviate.train.train_model` does, so
  with the task's retain set in ``split.train`` order (as :func:`make_task` builds it) the result
  equals ``train_model(..., exclude=request)`` bit for bit on the same machine;
* a user's own module: the private copy is re-initialised in place under ``torch.manual_seed(seed)``
  by calling every submodule's ``reset_parameters`` (or ``_reset_parameters``, e.g.
  ``nn.MultiheadAttention``) — :func:`obliviate.models.reinitialize_`. This is a fresh
  initialisation from the same distribution, not a bitwise replay of how the user first built the
  model. A module that owns parameters but has no reset method is refused (keeping trained weights
  would leak the forget set); buffers outside such methods (e.g. fixed normalisation constants)
  are kept. A pretrained user model cannot be re-created this way: give it an ``obliviate_spec``
  or retrain it yourself.

``seed`` is the original's training seed (``task.train_config["seed"]``), not ``task.seed``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from obliviate.config import EPOCHS_MAX, SEED_MAX, opt, validate_config
from obliviate.errors import ConfigError, RequestError
from obliviate.models import create_model, reinitialize_
from obliviate.train import TrainConfig, fit
from obliviate.unlearn.base import Unlearner, register_unlearner
from obliviate.unlearn.sisa import SisaEnsemble
from obliviate.unlearn.task import UnlearnTask

__all__ = ["Retrain", "RetrainConfig", "original_config", "reinitialize_"]


def original_config(task: UnlearnTask, **overrides: Any) -> TrainConfig:
    """The original's :class:`TrainConfig` from ``task.train_config`` (+ overrides)."""
    if not task.train_config:
        raise RequestError(
            "retrain needs the original training recipe, but the task has no train_config; "
            "build the task with make_task(..., train_config=<original TrainConfig>.to_dict())"
        )
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(task.train_config) - known)
    if unknown:
        raise ConfigError(f"task.train_config has unknown TrainConfig fields {unknown}")
    return TrainConfig(**{**task.train_config, **overrides})


@dataclass
class RetrainConfig:
    epochs: int = opt(
        0, "Training epochs; 0 keeps the original's (the gold recipe).", ge=0, le=EPOCHS_MAX
    )
    seed: int = opt(
        -1,
        "Training seed (initialisation and data order); -1 keeps the original's, the gold "
        "recipe. Other values give gold models over seeds.",
        ge=-1,
        le=SEED_MAX,
    )
    show_progress: bool = opt(False, "Show a progress bar while training.")

    def __post_init__(self) -> None:
        validate_config(self)


@register_unlearner(
    "retrain",
    tags={"exact", "needs_retain"},
    paper="Gold standard: retraining from scratch on D \\ D_u (e.g. Bourtoule et al. 2021, §II)",
)
class Retrain(Unlearner):
    """Retrain from scratch on the retain set with the original's recipe and seed (gold model)."""

    Config = RetrainConfig

    def check_task(self, task: UnlearnTask) -> None:
        super().check_task(task)
        original_config(task)  # refuse a task without the original's recipe before any work

    def _unlearn(self, model: nn.Module, task: UnlearnTask) -> dict[str, Any]:
        c: RetrainConfig = self.config  # type: ignore[assignment]
        if isinstance(model, SisaEnsemble):
            raise ConfigError(
                "retrain takes a single model; a SISA ensemble is retrained by the 'sisa' method "
                "or by obliviate.unlearn.sisa.train_sisa"
            )
        over: dict[str, Any] = {}
        if c.epochs > 0:
            over["epochs"] = c.epochs
        if c.seed >= 0:
            over["seed"] = c.seed
        cfg = original_config(task, **over)
        spec = getattr(model, "obliviate_spec", None)
        if spec is not None:
            torch.manual_seed(cfg.seed)
            net = create_model(spec["name"], **spec["kwargs"])
            init = "create_model"
        else:
            net = reinitialize_(model, cfg.seed)
            init = "reset_parameters"
        retain = task.retain
        val = (task.val.x, task.val.y) if task.val is not None and len(task.val) else None
        hist = fit(
            net,
            retain.x,
            retain.y,
            cfg,
            val=val,
            device=task.device,
            show_progress=c.show_progress,
            desc="retrain",
        )
        if net is not model:
            model.load_state_dict(net.state_dict())
        return {
            "init": init,
            "seed": cfg.seed,
            "epochs": cfg.epochs,
            "steps": hist.steps,
            "retain_size": len(retain),
            "train_seconds": hist.seconds,
            "stopped_early": hist.stopped_early,
        }
