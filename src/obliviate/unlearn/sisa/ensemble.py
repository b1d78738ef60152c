"""The SISA ensemble artifact (:class:`SisaEnsemble`: shards, per-slice checkpoints,
aggregation, exact unlearning by retraining affected shards) and its on-disk folder format
(:func:`save_sisa` / :func:`load_sisa`)."""

from __future__ import annotations

import copy
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import Tensor, nn

import obliviate
from obliviate._io import atomic_dir, read_json, sha256_file
from obliviate.errors import CheckpointError, ConfigError, ObliviateError, RequestError
from obliviate.models import create_model, penultimate_features
from obliviate.train import TrainConfig, fit
from obliviate.unlearn.sisa.core import (
    AGGREGATIONS,
    DATA,
    FORMAT,
    META,
    WEIGHTS,
    SisaData,
    _cpu_state,
    _fmt_ids,
    _seed,
    aggregate,
    sisa_cost,
    slice_epochs,
)


class SisaEnsemble(nn.Module):
    """S shard models + per-shard slice ids + per-slice checkpoints + aggregation.

    ``forward(x)`` maps a batch to ensemble scores usable by ``argmax`` and ``cross_entropy``
    (:func:`aggregate`). Shards left with no data by unlearning are skipped in the aggregation.
    ``features(x)`` concatenates the shards' penultimate features (a representation for
    similarity metrics; the ensemble has no single head).

    ``checkpoints[s][r]`` (CPU state dicts, never modified in place) is the state of shard ``s``
    *before* slice ``r``; ``checkpoints[s][R]`` equals its current weights. Build one with
    :func:`train_sisa` / :func:`train_sisa_model`; unlearn with the ``sisa`` unlearner or
    :meth:`unlearn_ids`; persist with :meth:`save` / :func:`load_sisa`.
    """

    def __init__(
        self,
        shards: Sequence[nn.Module],
        slice_ids: Sequence[Sequence[Tensor]],
        checkpoints: Sequence[Sequence[dict[str, Tensor]]],
        *,
        train_config: dict[str, Any],
        seed: int,
        aggregation: str = "vote",
        spec: dict[str, Any] | None = None,
        data: SisaData | None = None,
        slice_seconds: Sequence[Sequence[float]] | None = None,
        meta: dict[str, Any] | None = None,
        history: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        if aggregation not in AGGREGATIONS:
            raise ConfigError(
                f"unknown aggregation {aggregation!r}; choose one of {list(AGGREGATIONS)}"
            )
        s = len(shards)
        if s < 1 or len(slice_ids) != s or len(checkpoints) != s:
            raise ConfigError(
                f"SISA ensemble: {s} shard models, {len(slice_ids)} slice-id lists and "
                f"{len(checkpoints)} checkpoint lists must agree (and be >= 1)"
            )
        r = len(slice_ids[0])
        if r < 1 or any(len(sl) != r for sl in slice_ids):
            raise ConfigError("SISA ensemble: every shard needs the same number (>= 1) of slices")
        if any(len(ck) != r + 1 for ck in checkpoints):
            raise ConfigError(f"SISA ensemble: every shard needs R+1 = {r + 1} checkpoints")
        self.shards = nn.ModuleList(shards)
        self.slice_ids: list[list[Tensor]] = [
            [torch.as_tensor(t, dtype=torch.int64).reshape(-1) for t in sl] for sl in slice_ids
        ]
        self.checkpoints: list[list[dict[str, Tensor]]] = [list(ck) for ck in checkpoints]
        self.train_config = dict(train_config)
        self.seed = int(seed)
        self.aggregation = aggregation
        self.spec = copy.deepcopy(spec)
        self.data = data
        self.slice_seconds: list[list[float]] = (
            [list(map(float, t)) for t in slice_seconds]
            if slice_seconds is not None
            else [[0.0] * r for _ in range(s)]
        )
        self.meta = dict(meta or {})
        self.history: list[dict[str, Any]] = list(history or [])
        all_ids = self.ids
        if len(torch.unique(all_ids)) != len(all_ids):
            u, c = torch.unique(all_ids, return_counts=True)
            raise ConfigError(
                f"SISA ensemble: slices must be disjoint; ids in several: {_fmt_ids(u[c > 1])}"
            )

    # ---------------------------------------------------------------- structure
    @property
    def num_shards(self) -> int:
        return len(self.shards)

    @property
    def num_slices(self) -> int:
        return len(self.slice_ids[0])

    @property
    def epochs_per_slice(self) -> list[int]:
        return slice_epochs(int(self.train_config["epochs"]), self.num_slices)

    @property
    def ids(self) -> Tensor:
        """Every training id currently in the ensemble (shard by shard, slice by slice)."""
        return torch.cat([t for sl in self.slice_ids for t in sl])

    def shard_ids(self, s: int) -> Tensor:
        return torch.cat(self.slice_ids[s])

    @property
    def active(self) -> list[bool]:
        """Shards that hold data (an emptied shard is left out of the aggregation)."""
        return [sum(len(t) for t in sl) > 0 for sl in self.slice_ids]

    @property
    def shard_seconds(self) -> list[float]:
        return [sum(t) for t in self.slice_seconds]

    @property
    def train_seconds(self) -> float:
        """Recorded training wall time of all stages (sum over shards and slices)."""
        return float(sum(self.shard_seconds))

    def locate(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """(shard, slice) of each id; ``-1`` where the id is not in the ensemble."""
        ids = torch.as_tensor(ids, dtype=torch.int64).reshape(-1)
        shard = torch.full_like(ids, -1)
        slc = torch.full_like(ids, -1)
        for s, sl in enumerate(self.slice_ids):
            for r, t in enumerate(sl):
                m = torch.isin(ids, t)
                shard[m], slc[m] = s, r
        return shard, slc

    def cost(self, start: Sequence[int] | None = None) -> int:
        """Samples × epochs of training every shard from stage ``start[s]`` (0: from scratch)."""
        eps = self.epochs_per_slice
        return sum(
            sisa_cost([len(t) for t in sl], eps, 0 if start is None else start[i])
            for i, sl in enumerate(self.slice_ids)
        )

    # ---------------------------------------------------------------- inference
    def shard_logits(self, x: Tensor) -> Tensor:
        """Logits of every active shard, shape ``(S_active, N, C)``."""
        outs = [m(x) for m, a in zip(self.shards, self.active, strict=True) if a]
        if not outs:
            raise ConfigError("SISA ensemble has no shard with training data left")
        return torch.stack(outs)

    def forward(self, x: Tensor) -> Tensor:
        return aggregate(self.shard_logits(x), self.aggregation)

    def features(self, x: Tensor) -> Tensor:
        feats = [
            penultimate_features(m, x) for m, a in zip(self.shards, self.active, strict=True) if a
        ]
        return torch.cat([f.flatten(1) for f in feats], dim=1)

    # ---------------------------------------------------------------- copying
    def __deepcopy__(self, memo: dict[int, Any]) -> SisaEnsemble:
        """Deep copy that shares the read-only training tensors and checkpoint tensors."""
        if self.data is not None:
            memo[id(self.data)] = self.data
        for ck in self.checkpoints:
            for st in ck:
                memo[id(st)] = st
        cls = type(self)
        new = cls.__new__(cls)
        memo[id(self)] = new
        new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return new

    # ---------------------------------------------------------------- training
    def _stage_config(self, s: int, r: int, epochs: int) -> TrainConfig:
        return TrainConfig(
            **{**self.train_config, "epochs": epochs, "seed": _seed(self.seed, s, r)}
        )

    def _train_from(
        self,
        s: int,
        start: int,
        *,
        lookup: Callable[[Tensor], tuple[Tensor, Tensor]],
        device: str | torch.device | None,
        show_progress: bool = False,
    ) -> tuple[float, int, int]:
        """Reload ``checkpoints[s][start]`` and train stages ``start..R-1`` of shard ``s``.

        Returns (seconds, samples × epochs, stages trained)."""
        model = self.shards[s]
        model.load_state_dict(self.checkpoints[s][start])
        eps = self.epochs_per_slice
        seconds, work, stages = 0.0, 0, 0
        for r in range(start, self.num_slices):
            ids = torch.cat(self.slice_ids[s][: r + 1])
            t0 = time.perf_counter()
            if eps[r] > 0 and len(ids) > 0:
                x, y = lookup(ids)
                fit(
                    model,
                    x,
                    y,
                    self._stage_config(s, r, eps[r]),
                    device=device,
                    show_progress=show_progress,
                    desc=f"sisa shard {s} slice {r}",
                )
                work += len(ids) * eps[r]
            model.eval()
            self.checkpoints[s][r + 1] = _cpu_state(model)
            dt = time.perf_counter() - t0
            self.slice_seconds[s][r] = dt
            seconds += dt
            stages += 1
        return seconds, work, stages

    # ---------------------------------------------------------------- unlearning
    def unlearn_ids(
        self,
        forget_ids: Tensor | Sequence[int],
        *,
        retain: Any = None,
        device: str | torch.device | None = "cpu",
        show_progress: bool = False,
    ) -> dict[str, Any]:
        """Remove ``forget_ids`` in place: retrain only the affected shards, each from the
        checkpoint before its first affected slice. Returns the cost statistics.

        Images of the remaining ids come from ``self.data``; if the ensemble has none, or
        ``retain`` (anything with ``x``, ``y``, ``ids``, e.g. a task's retain set) is given, from
        ``retain``. Ids not in the ensemble raise :class:`RequestError` naming them.
        """
        f = torch.as_tensor(forget_ids, dtype=torch.int64).reshape(-1)
        if len(f) == 0:
            raise RequestError("empty forget set: the request names no samples to unlearn")
        if len(torch.unique(f)) != len(f):
            u, c = torch.unique(f, return_counts=True)
            raise RequestError(f"forget set has duplicate ids: {_fmt_ids(u[c > 1].tolist())}")
        shard_of, slice_of = self.locate(f)
        missing = f[shard_of < 0]
        if len(missing):
            raise RequestError(
                f"{len(missing)} forget id(s) are not in the SISA ensemble's training data "
                f"(never trained on, or already unlearned): {_fmt_ids(missing.tolist())}"
            )
        if retain is not None:
            store = SisaData(retain.x, retain.y, retain.ids)
        elif self.data is not None:
            store = self.data
        else:
            raise RequestError(
                "the SISA ensemble holds no training tensors (loaded without data?) and no "
                "retain set was given: retraining its shards needs the remaining images"
            )
        first: dict[int, int] = {}
        for s, r in zip(shard_of.tolist(), slice_of.tolist(), strict=True):
            first[s] = min(first.get(s, r), r)
        remaining = [[t[~torch.isin(t, f)] for t in sl] for sl in self.slice_ids]
        if not any(sum(len(t) for t in sl) > 0 for sl in remaining):
            raise RequestError("the request removes every training sample of the ensemble")
        for s in first:  # fail before changing anything if some remaining image is unavailable
            store.positions(torch.cat(remaining[s]))
        original_seconds = self.train_seconds
        self.slice_ids = remaining
        full_cost = self.cost()
        seconds, work, stages = 0.0, 0, 0
        for s in sorted(first):
            dt, w, k = self._train_from(
                s, first[s], lookup=store.take, device=device, show_progress=show_progress
            )
            seconds, work, stages = seconds + dt, work + w, stages + k
        if self.data is not None:
            self.data = self.data.without(f)
        monolithic = sum(len(self.shard_ids(s)) for s in range(self.num_shards)) * int(
            self.train_config["epochs"]
        )
        stats = {
            "forgotten": len(f),
            "shards_retrained": len(first),
            "slices_retrained": stages,
            "restart_slice": {str(s): r for s, r in sorted(first.items())},
            "retrain_seconds": seconds,
            "samples_epochs": work,
            "full_sisa_samples_epochs": full_cost,
            "cost_saved_vs_full_sisa": 1.0 - work / full_cost if full_cost else 0.0,
            "cost_saved_vs_monolithic": 1.0 - work / monolithic if monolithic else 0.0,
            "original_train_seconds": original_seconds,
        }
        if original_seconds > 0:  # unknown for an artifact built without timings
            stats["time_saved_vs_original"] = 1.0 - seconds / original_seconds
        self.history.append(
            {k: stats[k] for k in ("forgotten", "shards_retrained", "slices_retrained")}
        )
        return stats

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike[str], *, include_data: bool = False) -> Path:
        """Write the artifact folder atomically (see :func:`save_sisa`)."""
        return save_sisa(self, path, include_data=include_data)


# ----------------------------------------------------------------------------- persistence


def _key(s: int, r: int, name: str) -> str:
    return f"shard{s}/stage{r}/{name}"


def save_sisa(
    ens: SisaEnsemble, path: str | os.PathLike[str], *, include_data: bool = False
) -> Path:
    """Write ``ens`` to folder ``path`` atomically: ``checkpoints.safetensors`` (every shard's
    R+1 stage checkpoints, ``shard{s}/stage{r}/<param>``; stage R is the live weights),
    ``data.safetensors`` (x, y, ids; only with ``include_data``) and ``sisa.json`` (format,
    architecture spec, train config, seed, aggregation, slice ids, schedule, timings, history,
    dataset/split provenance and the SHA-256 of each file)."""
    path = Path(path)
    if include_data and ens.data is None:
        raise CheckpointError("include_data=True but the SISA ensemble holds no training data")
    tensors: dict[str, Tensor] = {}
    for s, ck in enumerate(ens.checkpoints):
        for r, st in enumerate(ck):
            for k, v in st.items():
                tensors[_key(s, r, k)] = v.detach().to("cpu").contiguous()
    with atomic_dir(path) as tmp:
        safetensors.torch.save_file(tensors, str(tmp / WEIGHTS))
        files = {WEIGHTS: sha256_file(tmp / WEIGHTS)}
        if include_data:
            d = ens.data
            assert d is not None
            safetensors.torch.save_file(
                {"x": d.x.contiguous(), "y": d.y.contiguous(), "ids": d.ids.contiguous()},
                str(tmp / DATA),
            )
            files[DATA] = sha256_file(tmp / DATA)
        model0 = ens.shards[0]
        meta = {
            "format": FORMAT,
            "model": ens.spec,
            "model_class": f"{type(model0).__module__}.{type(model0).__qualname__}",
            "aggregation": ens.aggregation,
            "shards": ens.num_shards,
            "slices": ens.num_slices,
            "seed": ens.seed,
            "train_config": ens.train_config,
            "epochs_per_slice": ens.epochs_per_slice,
            "slice_ids": [[t.tolist() for t in sl] for sl in ens.slice_ids],
            "slice_seconds": ens.slice_seconds,
            "history": ens.history,
            "meta": ens.meta,
            "files": files,
            "versions": {
                "obliviate": obliviate.__version__,
                "torch": torch.__version__,
                "python": platform.python_version(),
            },
        }
        (tmp / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return path


def _load_data(
    path: Path, files: dict[str, str], meta: dict[str, Any], dataset: Any, all_ids: Tensor
) -> SisaData | None:
    """The training tensors of a SISA artifact (stored, or taken from ``dataset`` after checking
    its fingerprint), checked to cover exactly ``all_ids``; None when neither is there."""
    data = None
    if DATA in files:
        try:
            d = safetensors.torch.load_file(str(path / DATA), device="cpu")
            data = SisaData(d["x"], d["y"], d["ids"])
        except (SafetensorError, OSError, KeyError, ConfigError) as e:
            raise CheckpointError(f"SISA artifact {path}: cannot read {DATA}: {e}") from None
    elif dataset is not None:
        rec = (meta.get("meta") or {}).get("dataset", {}).get("fingerprint")
        if rec is not None and dataset.fingerprint() != rec:
            raise CheckpointError(
                f"SISA artifact {path} was trained on dataset content {rec[:12]}, but the "
                f"dataset given has content {dataset.fingerprint()[:12]}"
            )
        x, y = dataset.tensors(all_ids)
        data = SisaData(x, y, all_ids)
    if data is not None:
        same = len(data.ids) == len(all_ids) and bool(
            torch.equal(torch.sort(data.ids).values, torch.sort(all_ids).values)
        )
        if not same:
            raise CheckpointError(
                f"SISA artifact {path}: stored data ids differ from the ensemble's slice ids"
            )
    return data


def load_sisa(
    path: str | os.PathLike[str],
    *,
    model_factory: Callable[[], nn.Module] | None = None,
    dataset: Any = None,
    device: str | torch.device = "cpu",
) -> SisaEnsemble:
    """Load and verify a SISA artifact folder; raise :class:`CheckpointError` on any mismatch.

    Checks: format, presence and SHA-256 of every file, the slice-id layout (S × R, disjoint),
    that every stage checkpoint fits the architecture (rebuilt from the recorded spec, or from
    ``model_factory`` for an unregistered model), and that stored data cover exactly the ids.
    ``dataset`` (an :class:`ImageDataset`) supplies the training tensors when the artifact was
    saved without them; its fingerprint must match the recorded one.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"SISA artifact {path} does not exist (expected a folder)")
    meta = read_json(
        path / META,
        f"SISA artifact {path}: {META}",
        CheckpointError,
        missing="is missing",
        corrupt="is corrupt",
    )
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        fmt = meta.get("format") if isinstance(meta, dict) else None
        raise CheckpointError(f"SISA artifact {path}: format {fmt!r}, expected {FORMAT!r}")
    try:
        files: dict[str, str] = meta["files"]
        n_shards, n_slices = int(meta["shards"]), int(meta["slices"])
        slice_ids = [[torch.tensor(t, dtype=torch.int64) for t in sl] for sl in meta["slice_ids"]]
        train_config, seed, aggregation = (
            meta["train_config"],
            int(meta["seed"]),
            meta["aggregation"],
        )
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"SISA artifact {path}: {META} lacks or garbles {e}") from None
    for name, digest in files.items():
        fp = path / name
        if not fp.exists():
            raise CheckpointError(f"SISA artifact {path}: {name} is missing")
        if sha256_file(fp) != digest:
            raise CheckpointError(
                f"SISA artifact {path}: {name} is corrupt or truncated (SHA-256 mismatch)"
            )
    if WEIGHTS not in files:
        raise CheckpointError(f"SISA artifact {path}: {META} does not list {WEIGHTS}")
    if len(slice_ids) != n_shards or any(len(sl) != n_slices for sl in slice_ids):
        raise CheckpointError(
            f"SISA artifact {path}: slice ids do not form {n_shards} shards × {n_slices} slices"
        )
    spec = meta.get("model")
    if spec is None and model_factory is None:
        raise CheckpointError(
            f"SISA artifact {path} holds an unregistered model ({meta.get('model_class')}); "
            "pass model_factory= to rebuild its architecture"
        )

    def build() -> nn.Module:
        if model_factory is not None:
            return model_factory()
        try:
            return create_model(spec["name"], **spec["kwargs"])
        except ObliviateError as e:
            raise CheckpointError(
                f"SISA artifact {path}: cannot rebuild model {spec['name']!r}: {e}"
            ) from None

    try:
        tensors = safetensors.torch.load_file(str(path / WEIGHTS), device="cpu")
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"SISA artifact {path}: cannot read {WEIGHTS}: {e}") from None
    models = [build() for _ in range(n_shards)]
    own = models[0].state_dict()
    checkpoints: list[list[dict[str, Tensor]]] = []
    for s in range(n_shards):
        ck = []
        for r in range(n_slices + 1):
            st = {k: tensors.pop(_key(s, r, k), None) for k in own}
            bad = [k for k, v in st.items() if v is None or tuple(v.shape) != tuple(own[k].shape)]
            if bad:
                raise CheckpointError(
                    f"SISA artifact {path}: shard {s} stage {r} does not fit the architecture "
                    f"{type(models[0]).__name__} (missing or mis-shaped: {bad[:5]})"
                )
            ck.append(st)
        models[s].load_state_dict(ck[n_slices])
        checkpoints.append(ck)
    if tensors:
        raise CheckpointError(
            f"SISA artifact {path}: unexpected tensors in {WEIGHTS}: {sorted(tensors)[:5]}"
        )
    data = _load_data(path, files, meta, dataset, torch.cat([t for sl in slice_ids for t in sl]))
    try:
        ens = SisaEnsemble(
            models,
            slice_ids,
            checkpoints,
            train_config=train_config,
            seed=seed,
            aggregation=aggregation,
            spec=spec,
            data=data,
            slice_seconds=meta.get("slice_seconds"),
            meta=meta.get("meta"),
            history=meta.get("history"),
        )
    except ConfigError as e:
        raise CheckpointError(f"SISA artifact {path}: {e}") from None
    return ens.to(device).eval()
