"""Shared pieces of the metrics package: the registry, the error type, input checks, batching."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from obliviate.errors import ObliviateError
from obliviate.inference import batched_features, batched_logits
from obliviate.registry import Registry

#: name → metric function. Metadata: ``higher_is_better`` (``True``/``False``, or ``None`` when
#: the ideal is the gold model's value), ``unit``, ``description``, ``reference`` (paper).
METRICS: Registry = Registry("metric")


class MetricError(ObliviateError, ValueError):
    """A metric cannot be computed from the inputs given; the message says why."""


def check_xy(x: Tensor, y: Tensor, name: str = "data") -> None:
    """Raise :class:`MetricError` unless ``x``/``y`` are a non-empty, aligned (inputs, labels)."""
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise MetricError(
            f"{name}: x and y must be tensors, got {type(x).__name__}, {type(y).__name__}"
        )
    if len(x) == 0:
        raise MetricError(f"{name} is empty; the metric is undefined on an empty set")
    if y.ndim != 1 or len(y) != len(x):
        raise MetricError(
            f"{name}: y must be 1-D with one label per input, got x {tuple(x.shape)}, "
            f"y {tuple(y.shape)}"
        )
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise MetricError(f"{name}: labels must be an integer tensor, got {y.dtype}")


@contextmanager
def eval_mode(*models: nn.Module) -> Iterator[None]:
    """Put ``models`` in eval mode for the block and restore each one's previous mode after."""
    modes = [m.training for m in models]
    try:
        for m in models:
            m.eval()
        yield
    finally:
        for m, mode in zip(models, modes, strict=True):
            m.train(mode)


def logits(
    model: nn.Module, x: Tensor, batch_size: int = 1000, device: str | torch.device = "cpu"
) -> Tensor:
    """Eval-mode logits of ``model`` on ``x``, batched, returned on the CPU (float32)."""
    if batch_size < 1:
        raise MetricError(f"batch_size must be >= 1, got {batch_size}")
    return batched_logits(model, x, batch_size=batch_size, device=device)


def predictions(
    model: nn.Module, x: Tensor, batch_size: int = 1000, device: str | torch.device = "cpu"
) -> Tensor:
    """Top-1 predicted labels (CPU, int64) of ``model`` on ``x``."""
    return logits(model, x, batch_size, device).argmax(1)


def features(
    model: nn.Module, x: Tensor, batch_size: int = 1000, device: str | torch.device = "cpu"
) -> Tensor:
    """Penultimate activations of ``model`` on ``x``, flattened, float32 on the CPU
    (:func:`obliviate.inference.batched_features`); an empty ``x`` is a :class:`MetricError`."""
    if len(x) == 0:
        raise MetricError("penultimate features of an empty set are undefined")
    return batched_features(model, x, batch_size=batch_size, device=device)
