"""The unlearning task: forget / retain / reserve / validation tensors with their sample ids.

A task is what every unlearner receives. Its data are plain tensors (float pixels in [0, 1] and
int64 labels; for a language model, token ids, labels and an attention mask) with ids, so users
can bring their own data; :func:`make_task` builds one from a
dataset, a split and a validated :class:`~obliviate.data.ForgetRequest`.

Reads of the retain and reserve sets are counted (``task.reads``) so the conformance suite can
check that a method tagged retain-free never touches retain data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from obliviate.data.dataset import ImageDataset
from obliviate.data.request import ForgetRequest
from obliviate.data.split import Split
from obliviate.errors import RequestError


@dataclass(frozen=True)
class TensorSet:
    """Inputs, labels and sample ids of one part of the data.

    Images: ``x`` float pixels in [0, 1], ``y`` int64 class labels, ``mask`` None. Text (a
    causal language model): ``x`` padded token ids (N, L), ``y`` the labels (N, L) — the token
    id on answer tokens, -100 on prompt and padding — and ``mask`` the attention mask (N, L),
    1 on real tokens; such a set is a *text set* (:attr:`is_text`).
    """

    x: torch.Tensor
    y: torch.Tensor
    ids: torch.Tensor
    mask: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if not (len(self.x) == len(self.y) == len(self.ids)):
            raise ValueError(
                f"TensorSet parts differ in length: x {len(self.x)}, y {len(self.y)}, "
                f"ids {len(self.ids)}"
            )
        if self.mask is not None and not (self.mask.shape == self.x.shape == self.y.shape):
            raise ValueError(
                f"a text TensorSet needs x, y and mask of one shape, got x "
                f"{tuple(self.x.shape)}, y {tuple(self.y.shape)}, mask {tuple(self.mask.shape)}"
            )

    def __len__(self) -> int:
        return len(self.y)

    @property
    def is_text(self) -> bool:
        """True for token sequences of a language model (the set has an attention mask)."""
        return self.mask is not None

    def batch(self, idx: torch.Tensor, device: torch.device | str = "cpu") -> tuple:
        """Rows ``idx`` on ``device``: ``(x, y)``, or ``(x, y, mask)`` for a text set."""
        parts = (self.x, self.y) if self.mask is None else (self.x, self.y, self.mask)
        return tuple(t[idx].to(device) for t in parts)

    @classmethod
    def empty_like(cls, other: TensorSet) -> TensorSet:
        mask = None if other.mask is None else other.mask[:0]
        return cls(other.x[:0], other.y[:0], other.ids[:0], mask)


@dataclass
class UnlearnTask:
    """Everything an unlearner may use. Only ``forget`` is always present.

    ``train_config`` and ``model_kwargs`` describe the original recipe (needed by exact methods);
    ``num_classes`` sizes random relabelling; ``seed`` drives every random choice of the method.
    """

    forget: TensorSet
    _retain: TensorSet | None = None
    _reserve: TensorSet | None = None
    val: TensorSet | None = None
    num_classes: int = 0
    seed: int = 0
    device: str = "cpu"
    train_config: dict[str, Any] | None = None
    reads: dict[str, int] = field(default_factory=lambda: {"retain": 0, "reserve": 0})

    def __post_init__(self) -> None:
        if len(self.forget) == 0:
            raise RequestError("empty forget set: the task names no samples to unlearn")
        fids = self.forget.ids
        if len(torch.unique(fids)) != len(fids):
            u, c = torch.unique(fids, return_counts=True)
            raise RequestError(f"forget set has duplicate ids: {u[c > 1][:20].tolist()}")
        for name, part in (("retain", self._retain), ("reserve", self._reserve)):
            if part is not None and len(part):
                both = fids[torch.isin(fids, part.ids)]
                if len(both):
                    raise RequestError(
                        f"forget and {name} sets overlap on ids {both[:20].tolist()}"
                    )
        if self.num_classes <= 0:
            ys = [self.forget.y] + [p.y for p in (self._retain, self.val) if p is not None]
            self.num_classes = int(torch.cat(ys).max()) + 1

    @property
    def retain(self) -> TensorSet:
        """The retained training data (counted read; raises if the task has none)."""
        if self._retain is None:
            raise RequestError("this task has no retain data, but the method needs it")
        self.reads["retain"] += 1
        return self._retain

    @property
    def reserve(self) -> TensorSet:
        """The spare pool kept out of training (counted read; raises if the task has none)."""
        if self._reserve is None:
            raise RequestError("this task has no reserve (spare pool), but the method needs it")
        self.reads["reserve"] += 1
        return self._reserve

    @property
    def is_text(self) -> bool:
        """True when the task holds token sequences for a causal language model."""
        return self.forget.is_text

    @property
    def has_retain(self) -> bool:
        return self._retain is not None and len(self._retain) > 0

    @property
    def has_reserve(self) -> bool:
        return self._reserve is not None and len(self._reserve) > 0


def make_task(
    dataset: ImageDataset,
    split: Split,
    request: ForgetRequest,
    *,
    seed: int = 0,
    device: str = "cpu",
    train_config: dict[str, Any] | None = None,
    include_retain: bool = True,
) -> UnlearnTask:
    """Build a task from a split and a request (validated: ids must be distinct training ids)."""
    split.check(dataset)
    request.validate(split)
    f = request.tensor
    retain_ids = split.train[~torch.isin(split.train, f)]

    def part(ids: torch.Tensor) -> TensorSet:
        x, y = dataset.tensors(ids)
        return TensorSet(x, y, ids.clone())

    return UnlearnTask(
        forget=part(f),
        _retain=part(retain_ids) if include_retain else None,
        _reserve=part(split.reserve) if len(split.reserve) else None,
        val=part(split.val) if len(split.val) else None,
        num_classes=dataset.num_classes,
        seed=seed,
        device=device,
        train_config=train_config,
    )
