"""Request-selection primitives shared by every strategy: the :data:`REQUEST_STRATEGIES`
registry, the :class:`SelectionContext` a strategy sees, the :class:`RequestSelection` it yields,
the budget and constraint checks (:func:`resolve_budget`, :func:`candidate_ids`) and the
deterministic top-k (scores descending, ties to the smaller id, so selection never depends on the
order of the split).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from obliviate.data.dataset import ImageDataset, _fmt_ids
from obliviate.data.request import ForgetRequest
from obliviate.data.split import Split
from obliviate.errors import ConfigError, ObliviateError, RequestError
from obliviate.registry import Registry

__all__ = [
    "REQUEST_STRATEGIES",
    "RequestSelection",
    "SelectionContext",
    "candidate_ids",
    "resolve_budget",
    "top_k",
]

#: name → strategy ``fn(ctx: SelectionContext, **options) -> (ids, score, details)``.
#: Metadata: ``description``, ``objective`` (what ``score`` measures).
REQUEST_STRATEGIES: Registry[Callable[..., tuple[Tensor, float, dict[str, Any]]]] = Registry(
    "request strategy"
)


@dataclass
class RequestSelection:
    """A chosen request, the strategy that chose it and the value it optimised.

    ``score`` is higher for a request expected to be more damaging; its unit depends on the
    strategy (``REQUEST_STRATEGIES.meta(name)["objective"]``). ``random`` and ``class`` optimise
    nothing: their score is NaN (``None`` in :meth:`to_dict`).
    """

    request: ForgetRequest
    strategy: str
    score: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "request": self.request.to_dict(),
            "strategy": self.strategy,
            "score": None if math.isnan(self.score) else self.score,
            "objective": REQUEST_STRATEGIES.meta(self.strategy).get("objective", ""),
            "details": self.details,
        }


@dataclass
class SelectionContext:
    """What a strategy sees: the allowed candidate ids (sorted) and the request size ``k``."""

    model: nn.Module
    dataset: ImageDataset
    split: Split
    candidates: Tensor
    k: int
    seed: int
    device: torch.device
    classes: list[int] | None = None
    controlled_ids: Tensor | None = None

    def tensors(self, ids: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.dataset.tensors(self.candidates if ids is None else ids)

    def rng(self, salt: int = 0) -> np.random.Generator:
        return np.random.default_rng([int(self.seed), int(salt)])


# ------------------------------------------------------------------------------ budget & checks


def resolve_budget(budget: int | float, n_train: int) -> int:
    """Request size: an int ``k >= 1`` or a fraction in (0, 1) of the ``n_train`` training
    samples (rounded, at least 1). Anything else raises :class:`ConfigError` naming ``budget``."""
    if isinstance(budget, bool) or not isinstance(budget, int | float | np.integer | np.floating):
        raise ConfigError(f"budget must be a count or a fraction in (0, 1), got {budget!r}")
    if isinstance(budget, float | np.floating):
        b = float(budget)
        if 0.0 < b < 1.0:
            return max(1, int(round(b * n_train)))
        raise ConfigError(
            f"budget must be an integer count or a fraction in (0, 1), got {budget!r}: pass an "
            "integer for a count"
        )
    k = int(budget)
    if k < 1:
        raise ConfigError(f"budget must be >= 1 sample, got {k}")
    return k


def candidate_ids(
    dataset: ImageDataset,
    split: Split,
    *,
    classes: Sequence[int] | None = None,
    controlled_ids: Sequence[int] | Tensor | None = None,
    exclude_classes: Sequence[int] = (),
) -> Tensor:
    """Sorted training ids allowed by the constraints: in ``split.train``, among
    ``controlled_ids`` (if given), with a label in ``classes`` (if given) and not in
    ``exclude_classes``. Bad classes raise :class:`ConfigError`; controlled ids outside the
    training split raise :class:`RequestError` naming them."""
    split.check(dataset)
    cand = torch.sort(split.train).values
    for what, cs in (("classes", classes), ("exclude_classes", exclude_classes)):
        if cs is None:
            continue
        bad = [c for c in cs if isinstance(c, bool) or not 0 <= int(c) < dataset.num_classes]
        if bad:
            raise ConfigError(
                f"{what}: {bad} are not class indices of dataset {dataset.name!r} "
                f"(0..{dataset.num_classes - 1})"
            )
    if classes is not None and len(classes) == 0:
        raise ConfigError("classes: an empty list allows no sample; pass None for no constraint")
    if controlled_ids is not None:
        ctrl = torch.as_tensor(controlled_ids, dtype=torch.int64).reshape(-1)
        if ctrl.numel() == 0:
            raise RequestError("controlled_ids is empty: the attacker controls no sample")
        uniq, counts = torch.unique(ctrl, return_counts=True)
        if bool((counts > 1).any()):
            dups = uniq[counts > 1].tolist()
            raise RequestError(f"controlled_ids has duplicate ids: {dups[:10]}")
        outside = ctrl[~torch.isin(ctrl, split.train)]
        if outside.numel():
            raise RequestError(
                f"controlled_ids outside the training split: {_fmt_ids(outside.tolist())}"
            )
        cand = cand[torch.isin(cand, ctrl)]
    labels = dataset.labels_of(cand)
    keep = torch.ones(len(cand), dtype=torch.bool)
    if classes is not None:
        keep &= torch.isin(labels, torch.as_tensor([int(c) for c in classes]))
    if exclude_classes:
        keep &= ~torch.isin(labels, torch.as_tensor([int(c) for c in exclude_classes]))
    return cand[keep]


def top_k(ids: Tensor, scores: Tensor, k: int) -> Tensor:
    """The ``k`` ids with the highest scores; ties go to the smaller id (order-independent)."""
    s = scores.detach().double().cpu().numpy()
    if not np.all(np.isfinite(s)):
        raise ObliviateError("request scores contain NaN or inf; the model's outputs are invalid")
    order = np.lexsort((ids.cpu().numpy(), -s))
    return ids[torch.from_numpy(order[:k])]


# --------------------------------------------------------------------- reference data & subsamples


def _reference_ids(split: Split, reference: str, n_max: int, seed: int) -> tuple[Tensor, str]:
    """Held-out ids the attacker measures damage on: ``val`` (or ``test``; ``auto`` = val when
    the split has one), a seeded subsample of at most ``n_max``."""
    if reference == "auto":
        reference = "val" if len(split.val) else "test"
    if reference not in ("val", "test"):
        raise ConfigError(f"reference must be 'auto', 'val' or 'test', got {reference!r}")
    ids = getattr(split, reference)
    if len(ids) == 0:
        raise ConfigError(f"reference={reference!r}, but the split's {reference} part is empty")
    if n_max > 0 and len(ids) > n_max:
        g = torch.Generator().manual_seed(int(seed))
        ids = torch.sort(ids[torch.randperm(len(ids), generator=g)[:n_max]]).values
    return ids, reference


def _subsample(ids: Tensor, n_max: int, seed: int) -> tuple[Tensor, Tensor]:
    """(sorted subsample of at most ``n_max`` ids, their positions in ``ids``); 0 keeps all."""
    if n_max <= 0 or len(ids) <= n_max:
        return ids, torch.arange(len(ids))
    g = torch.Generator().manual_seed(int(seed))
    pos = torch.sort(torch.randperm(len(ids), generator=g)[:n_max]).values
    return ids[pos], pos
