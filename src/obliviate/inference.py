"""Batched inference helpers shared by training, metrics and attacks."""

from __future__ import annotations

import torch
from torch import nn


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
