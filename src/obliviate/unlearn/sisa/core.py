"""SISA building blocks (Bourtoule et al. 2021): constants, the shard/slice partition and its
cost, ensemble aggregation, the training-data view and shard construction."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from obliviate._io import hash_parts
from obliviate.errors import ConfigError, RequestError
from obliviate.models import create_model, reinitialize_

Aggregation = Literal["vote", "mean_softmax"]
AGGREGATIONS: tuple[str, ...] = ("vote", "mean_softmax")
#: Added to every vote count before taking the log, so that CE stays finite (see aggregate()).
VOTE_EPS = 1e-6

FORMAT = "obliviate.sisa/1"
META, WEIGHTS, DATA = "sisa.json", "checkpoints.safetensors", "data.safetensors"

ModelSource = str | dict[str, Any] | Callable[[], nn.Module] | nn.Module


# ----------------------------------------------------------------------------- pure helpers


def slice_epochs(epochs: int, slices: int) -> list[int]:
    """Epochs of each slice stage (official schedule): with ``avg = 2R/(R+1) · e/R = 2e/(R+1)``,
    slice ``r`` gets ``⌊(r+1)·avg⌋ − ⌊r·avg⌋``. The cost (samples × epochs) of training a shard
    this way is about ``e`` passes over the whole shard."""
    if slices < 1 or epochs < 0:
        raise ConfigError(f"slices must be >= 1 and epochs >= 0, got {slices}, {epochs}")
    return [
        ((r + 1) * 2 * epochs) // (slices + 1) - (r * 2 * epochs) // (slices + 1)
        for r in range(slices)
    ]


def sisa_cost(slice_sizes: Sequence[int], epochs_per_slice: Sequence[int], start: int = 0) -> int:
    """Samples × epochs processed when training stages ``start..R-1`` of one shard."""
    cum = 0
    total = 0
    for r, (n, e) in enumerate(zip(slice_sizes, epochs_per_slice, strict=True)):
        cum += n
        if r >= start:
            total += cum * e
    return total


def sisa_partition(ids: Tensor, shards: int, slices: int, seed: int) -> list[list[Tensor]]:
    """Uniform seeded partition of ``ids`` into ``shards`` × ``slices`` disjoint parts."""
    ids = torch.as_tensor(ids, dtype=torch.int64).reshape(-1)
    if shards < 1 or slices < 1:
        raise ConfigError(f"shards and slices must be >= 1, got {shards}, {slices}")
    if len(ids) < shards * slices:
        raise ConfigError(
            f"cannot split {len(ids)} samples into {shards} shards × {slices} slices "
            "(every slice needs at least one sample)"
        )
    g = torch.Generator().manual_seed(int(seed))
    perm = ids[torch.randperm(len(ids), generator=g)]
    return [
        [part.clone() for part in torch.tensor_split(shard, slices)]
        for shard in torch.tensor_split(perm, shards)
    ]


def aggregate(logits: Tensor, how: str, eps: float = VOTE_EPS) -> Tensor:
    """Combine per-shard logits ``(S, N, C)`` into ensemble scores ``(N, C)``.

    * ``"mean_softmax"``: ``log(mean_s softmax(logits_s))`` — log-probabilities, so
      ``cross_entropy`` on them is the NLL of the averaged probabilities; differentiable.
    * ``"vote"``: ``log((votes + eps) / (S + C·eps))`` where ``votes[c]`` counts the shards whose
      argmax is ``c``: the log of the (smoothed) vote fractions. ``argmax`` is the majority vote
      (ties go to the lowest class index, as ``np.argmax`` in the official aggregation), and
      ``cross_entropy`` is finite (``-log(eps/S)`` ≈ 14.5 when no shard votes for the label). The
      argmax has no gradient: use ``mean_softmax`` for gradient-based attacks.
    """
    if logits.dim() != 3:
        raise ConfigError(f"aggregate expects (shards, batch, classes) logits, got {logits.shape}")
    s, _, c = logits.shape
    if how == "mean_softmax":
        return torch.logsumexp(F.log_softmax(logits.float(), dim=-1), dim=0) - math.log(s)
    if how == "vote":
        votes = F.one_hot(logits.argmax(-1), c).sum(0).float()
        return torch.log((votes + eps) / (s + c * eps))
    raise ConfigError(f"unknown aggregation {how!r}; choose one of {list(AGGREGATIONS)}")


def _derive_seed(*parts: object) -> int:
    """A 60-bit seed from ``parts`` (independent streams per shard / slice)."""
    return int(hash_parts("obliviate.sisa", *(str(p) for p in parts))[:15], 16)


def _fmt_ids(ids: Sequence[int], limit: int = 20) -> str:
    ids = list(ids)
    more = f" … (+{len(ids) - limit} more)" if len(ids) > limit else ""
    return str(ids[:limit]) + more


def _cpu_state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------- training data


@dataclass(frozen=True, eq=False)
class SisaData:
    """The training tensors of an ensemble, looked up by sample id (read-only by convention)."""

    x: Tensor
    y: Tensor
    ids: Tensor
    _sorted: Tensor = field(init=False, repr=False)
    _order: Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ids = torch.as_tensor(self.ids, dtype=torch.int64).reshape(-1)
        if not (len(self.x) == len(self.y) == len(ids)):
            raise ConfigError(
                f"SISA data parts differ in length: x {len(self.x)}, y {len(self.y)}, "
                f"ids {len(ids)}"
            )
        srt, order = torch.sort(ids)
        if len(srt) > 1 and bool((srt[1:] == srt[:-1]).any()):
            dup = srt[1:][srt[1:] == srt[:-1]].unique().tolist()
            raise ConfigError(f"SISA training ids must be distinct; duplicates: {_fmt_ids(dup)}")
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "_sorted", srt)
        object.__setattr__(self, "_order", order)

    def __len__(self) -> int:
        return len(self.ids)

    def positions(self, ids: Tensor) -> Tensor:
        """Row positions of ``ids``; unknown ids raise :class:`RequestError` naming them."""
        ids = torch.as_tensor(ids, dtype=torch.int64).reshape(-1)
        if len(self._sorted) == 0:
            pos = torch.zeros_like(ids)
            found = torch.zeros(len(ids), dtype=torch.bool)
        else:
            pos = torch.searchsorted(self._sorted, ids).clamp_max(len(self._sorted) - 1)
            found = self._sorted[pos] == ids
        if not bool(found.all()):
            raise RequestError(
                f"{int((~found).sum())} id(s) have no stored training data: "
                f"{_fmt_ids(ids[~found].tolist())}"
            )
        return self._order[pos]

    def take(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        p = self.positions(ids)
        return self.x[p], self.y[p]

    def without(self, ids: Tensor) -> SisaData:
        keep = ~torch.isin(self.ids, torch.as_tensor(ids, dtype=torch.int64))
        return SisaData(self.x[keep], self.y[keep], self.ids[keep])


# ----------------------------------------------------------------------------- the ensemble


def _seed(seed: int, s: int, r: int | str) -> int:
    return _derive_seed(seed, s, r)


# ----------------------------------------------------------------------------- building


def _spec_of(source: ModelSource) -> dict[str, Any] | None:
    if isinstance(source, dict):
        return {"name": source["name"], "kwargs": dict(source.get("kwargs", {}))}
    if isinstance(source, nn.Module):
        return copy.deepcopy(getattr(source, "obliviate_spec", None))
    return None


def _build_shard(source: ModelSource, seed: int, model_kwargs: dict[str, Any] | None) -> nn.Module:
    """A freshly initialised shard model under ``seed``.

    A registered name / spec dict goes through ``create_model``; a callable is called; an
    ``nn.Module`` is a template: rebuilt from its ``obliviate_spec`` if it has one, otherwise
    deep-copied and re-initialised by :func:`obliviate.models.reinitialize_`.
    """
    torch.manual_seed(seed)
    if isinstance(source, str):
        return create_model(source, **(model_kwargs or {}))
    spec = _spec_of(source)
    if spec is not None:
        return create_model(spec["name"], **spec["kwargs"])
    if isinstance(source, nn.Module):
        return reinitialize_(copy.deepcopy(source), seed)
    if callable(source):
        m = source()
        if not isinstance(m, nn.Module):
            raise ConfigError(f"model factory returned {type(m).__name__}, not an nn.Module")
        return m
    raise ConfigError(
        "model must be a registered model name, a spec {'name', 'kwargs'}, a factory or a module; "
        f"got {type(source).__name__}"
    )
