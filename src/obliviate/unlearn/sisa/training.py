"""Training a SISA ensemble from scratch: :func:`train_sisa` (from tensors) and
:func:`train_sisa_model` (from a dataset, split and training recipe)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from obliviate.errors import ConfigError
from obliviate.train import TrainConfig, model_kwargs_for, training_ids
from obliviate.unlearn.sisa.core import (
    ModelSource,
    SisaData,
    _build_shard,
    _cpu_state,
    _seed,
    _spec_of,
    sisa_partition,
)
from obliviate.unlearn.sisa.ensemble import SisaEnsemble
from obliviate.utils import resolve_device


def train_sisa(
    x: Tensor,
    y: Tensor,
    ids: Tensor,
    model: ModelSource,
    cfg: TrainConfig | None = None,
    *,
    shards: int = 5,
    slices: int = 5,
    aggregation: str = "vote",
    seed: int | None = None,
    partition: Sequence[Sequence[Tensor | Sequence[int]]] | None = None,
    model_kwargs: dict[str, Any] | None = None,
    device: str | torch.device | None = "cpu",
    keep_data: bool = True,
    show_progress: bool = False,
    meta: dict[str, Any] | None = None,
) -> SisaEnsemble:
    """SISA-train an ensemble on images ``x`` (float, [0, 1]), labels ``y`` and sample ``ids``.

    ``model``: a registered model name (+ ``model_kwargs``), a spec ``{"name", "kwargs"}``, a
    zero-argument factory, or a template module. Shard ``s`` is initialised under a seed derived
    from ``(seed, s)`` and stage ``r`` trained with ``cfg`` but a seed derived from
    ``(seed, s, r)`` and ``slice_epochs(cfg.epochs, slices)[r]`` epochs. ``seed`` defaults to
    ``cfg.seed``. ``partition`` (``shards`` lists of ``slices`` id lists) replaces the uniform
    seeded partition. ``keep_data`` stores (x, y, ids) in the ensemble for later unlearning.
    """
    cfg = cfg or TrainConfig()
    if cfg.early_stop_patience > 0:
        raise ConfigError(
            "SISA trains its slice stages without validation data: early_stop_patience must be 0"
        )
    seed = cfg.seed if seed is None else int(seed)
    data = SisaData(x, y, ids)
    if partition is None:
        parts = sisa_partition(data.ids, shards, slices, seed)
    else:
        parts = [
            [torch.as_tensor(t, dtype=torch.int64).reshape(-1) for t in sl] for sl in partition
        ]
        if not parts:
            raise ConfigError("partition must list at least one shard")
        used = torch.cat([t for sl in parts for t in sl])
        data = SisaData(*data.take(used), used)  # keep only the partitioned ids (all must exist)
    dev = resolve_device(device)
    models = [_build_shard(model, _seed(seed, s, "init"), model_kwargs) for s in range(len(parts))]
    spec = getattr(models[0], "obliviate_spec", None) or _spec_of(model)
    init = [[_cpu_state(m)] + [{}] * len(parts[0]) for m in models]
    ens = SisaEnsemble(
        models,
        parts,
        init,
        train_config=cfg.to_dict(),
        seed=seed,
        aggregation=aggregation,
        spec=spec,
        data=data if keep_data else None,
        meta=meta,
    )
    for s in range(ens.num_shards):
        ens._train_from(s, 0, lookup=data.take, device=dev, show_progress=show_progress)
    return ens.eval()


def train_sisa_model(
    dataset: Any,
    split: Any,
    model: str,
    cfg: TrainConfig | None = None,
    *,
    shards: int = 5,
    slices: int = 5,
    aggregation: str = "vote",
    model_kwargs: dict[str, Any] | None = None,
    exclude: Any = None,
    seed: int | None = None,
    device: str | torch.device | None = "cpu",
    keep_data: bool = True,
    show_progress: bool = False,
) -> SisaEnsemble:
    """SISA-train registered model ``model`` on ``split.train`` (minus ``exclude``, a
    :class:`ForgetRequest`) of ``dataset``, with the same model kwargs :func:`train_model` uses
    (normalisation statistics of ``split.train``). The ensemble's ``meta`` records the dataset
    fingerprint and the split hash, which :func:`load_sisa` checks against a given dataset."""
    train_ids = training_ids(dataset, split, exclude)
    kw = model_kwargs_for(dataset, split, model_kwargs)
    x, y = dataset.tensors(train_ids)
    meta = {
        "dataset": {
            "name": dataset.name,
            "source": dataset.source,
            "fingerprint": dataset.fingerprint(),
            "num_classes": dataset.num_classes,
        },
        "split_hash": split.hash,
    }
    return train_sisa(
        x,
        y,
        train_ids,
        {"name": model, "kwargs": kw},
        cfg,
        shards=shards,
        slices=slices,
        aggregation=aggregation,
        seed=seed,
        device=device,
        keep_data=keep_data,
        show_progress=show_progress,
        meta=meta,
    )
