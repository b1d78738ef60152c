"""Accuracy, per-class accuracy and unlearn accuracy (UA = 100 − forget accuracy), in percent.

UA follows RURK (Hsu et al., NeurIPS 2025, Table 1) and SalUn (Jia et al. 2023): the share of
forget samples the model gets wrong. Every function raises :class:`MetricError` on an empty set.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from obliviate.metrics._common import METRICS, MetricError, check_xy, predictions


def accuracy_from_predictions(pred: Tensor, y: Tensor) -> float:
    """Top-1 accuracy in percent of predicted labels ``pred`` against ``y``."""
    if len(y) == 0:
        raise MetricError("accuracy of an empty set is undefined")
    if pred.shape != y.shape:
        raise MetricError(f"pred {tuple(pred.shape)} and y {tuple(y.shape)} differ in shape")
    return 100.0 * float((pred.cpu() == y.cpu()).double().mean())


@METRICS.register(
    "accuracy",
    higher_is_better=True,
    unit="%",
    description="top-1 accuracy on a set (retain / test / validation / forget)",
    reference="standard",
)
def accuracy(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    batch_size: int = 1000,
    device: str | torch.device = "cpu",
) -> float:
    """Top-1 accuracy of ``model`` on (x, y), in percent (eval mode, batched, no gradients)."""
    check_xy(x, y, "accuracy set")
    return accuracy_from_predictions(predictions(model, x, batch_size, device), y)


@METRICS.register(
    "per_class_accuracy",
    higher_is_better=True,
    unit="%",
    description="top-1 accuracy of each class present in the set",
    reference="standard",
)
def per_class_accuracy(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    batch_size: int = 1000,
    device: str | torch.device = "cpu",
) -> dict[int, float]:
    """``{class: accuracy %}`` for every class that occurs in ``y`` (sorted by class).

    Classes with no sample in ``y`` are absent from the dict: their accuracy is undefined.
    """
    check_xy(x, y, "per-class accuracy set")
    return per_class_accuracy_from_predictions(predictions(model, x, batch_size, device), y)


def per_class_accuracy_from_predictions(pred: Tensor, y: Tensor) -> dict[int, float]:
    """``{class: accuracy %}`` from predicted labels, for the classes present in ``y``."""
    if len(y) == 0:
        raise MetricError("per-class accuracy of an empty set is undefined")
    pred, y = pred.cpu(), y.cpu()
    return {int(c): 100.0 * float((pred[y == c] == c).double().mean()) for c in torch.unique(y)}


@METRICS.register(
    "unlearn_accuracy",
    higher_is_better=None,
    unit="%",
    description="UA = 100 − forget-set accuracy; ideal is the gold model's UA (too high = "
    "over-forgetting)",
    reference="RURK (Hsu et al. 2025) Table 1; SalUn (Jia et al. 2023)",
)
def unlearn_accuracy(
    model: nn.Module,
    x_forget: Tensor,
    y_forget: Tensor,
    batch_size: int = 1000,
    device: str | torch.device = "cpu",
) -> float:
    """UA = 100 − accuracy on the forget set, in percent."""
    check_xy(x_forget, y_forget, "forget set")
    return 100.0 - accuracy(model, x_forget, y_forget, batch_size, device)
