"""Batched inference shared by training, metrics, unlearners, attacks and defenses: the one way to
get a model's logits (:func:`batched_logits`) and penultimate features (:func:`batched_features`)
on a set of inputs."""

from __future__ import annotations

import torch
from torch import nn

from obliviate.errors import ConfigError
from obliviate.models.base import penultimate_features


@torch.inference_mode()
def batched_logits(
    model: nn.Module,
    x: torch.Tensor,
    batch_size: int = 1000,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Logits of ``model`` on ``x`` (float pixels in [0, 1]), in eval mode, returned on the CPU.

    The model's train/eval mode is restored afterwards; the model is not otherwise changed.
    """
    was_training = model.training
    model.eval()
    try:
        outs = [
            model(x[i : i + batch_size].to(device)).float().cpu()
            for i in range(0, len(x), batch_size)
        ]
    finally:
        model.train(was_training)
    if not outs:
        return torch.empty(0, 0)
    return torch.cat(outs)


@torch.no_grad()
def batched_features(
    model: nn.Module,
    x: torch.Tensor,
    batch_size: int = 1000,
    device: str | torch.device = "cpu",
    *,
    keep_device: bool = False,
) -> torch.Tensor:
    """Penultimate activations (:func:`obliviate.models.penultimate_features`) of ``model`` on
    ``x``, batched, in eval mode without gradients, flattened to ``(N, D)``.

    Returned as float32 on the CPU, like :func:`batched_logits`; with ``keep_device=True`` they
    stay on ``device`` in the model's dtype (for further work there, e.g. a second-order solve).
    The result is an ordinary tensor (not an inference tensor), so it may feed autograd as an
    input. The model's train/eval mode is restored afterwards; the model is not otherwise changed.
    An empty ``x`` gives an empty ``(0, 0)`` tensor.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    was_training = model.training
    model.eval()
    try:
        outs = []
        for i in range(0, len(x), batch_size):
            f = penultimate_features(model, x[i : i + batch_size].to(device)).flatten(1)
            outs.append(f if keep_device else f.float().cpu())
    finally:
        model.train(was_training)
    if not outs:
        return torch.empty(0, 0, device=device if keep_device else "cpu")
    return torch.cat(outs)
