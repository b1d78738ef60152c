"""The conformance case: a trained model and the task unlearned from it.

The default (:func:`synthetic_case`) assumes nothing about images: a tiny ReLU MLP trained on
Gaussian clusters of synthetic vectors, forgetting one whole class.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from functools import lru_cache

import torch
from torch import nn

from obliviate.train import TrainConfig, fit
from obliviate.unlearn import TensorSet, Unlearner, UnlearnTask


@dataclass
class ConformanceCase:
    """A trained model and the task unlearned from it (``task`` is a template: checks run on
    fresh copies with zeroed read counters). ``conformance_model`` artifacts are cached per
    (unlearner class, device)."""

    model: nn.Module
    task: UnlearnTask
    artifacts: dict[tuple[type, str], nn.Module] = field(default_factory=dict, repr=False)

    def fresh_task(
        self,
        seed: int | None = None,
        *,
        device: str | None = None,
        retain: bool = True,
        reserve: bool = True,
    ) -> UnlearnTask:
        """A copy of the template task (new read counters), optionally without retain/reserve."""
        t = self.task
        return dataclasses.replace(
            t,
            _retain=t._retain if retain else None,
            _reserve=t._reserve if reserve else None,
            seed=t.seed if seed is None else seed,
            device=t.device if device is None else device,
            reads={"retain": 0, "reserve": 0},
        )

    def model_for(self, cls: type[Unlearner], device: str) -> nn.Module:
        """A private copy of the model ``cls`` takes (``cls.conformance_model``, built once)."""
        key = (cls, device)
        if key not in self.artifacts:
            base = copy.deepcopy(self.model)
            self.artifacts[key] = cls.conformance_model(base, self.fresh_task(device=device))
        return copy.deepcopy(self.artifacts[key])


def synthetic_case(
    *,
    num_classes: int = 4,
    dim: int = 16,
    per_class: int = 96,
    hidden: int = 32,
    seed: int = 0,
) -> ConformanceCase:
    """The default case: a ReLU MLP (``dim`` → ``hidden`` → ``hidden`` → ``num_classes``) trained
    (SGD, 20 epochs) on Gaussian clusters in [0, 1]^dim; forget every training row of class 0.

    Deterministic under ``seed``. The task also holds a reserve and a validation set (10 rows per
    class each, ids disjoint from training) and the training recipe (for exact methods)."""
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(num_classes, dim, generator=g) * 0.6 + 0.2

    def draw(n: int, first_id: int) -> TensorSet:
        y = torch.arange(num_classes).repeat_interleave(n)
        x = (means[y] + 0.15 * torch.randn(len(y), dim, generator=g)).clamp(0.0, 1.0)
        return TensorSet(x, y, torch.arange(first_id, first_id + len(y)))

    train = draw(per_class, 0)
    reserve = draw(10, 100_000)
    val = draw(10, 200_000)
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(dim, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )
    cfg = TrainConfig(epochs=20, lr=0.05, batch_size=32, seed=seed)
    fit(model, train.x, train.y, cfg, device="cpu", show_progress=False)
    f = train.y == 0
    task = UnlearnTask(
        forget=TensorSet(train.x[f], train.y[f], train.ids[f]),
        _retain=TensorSet(train.x[~f], train.y[~f], train.ids[~f]),
        _reserve=reserve,
        val=val,
        num_classes=num_classes,
        seed=0,
        train_config=cfg.to_dict(),
    )
    return ConformanceCase(model, task)


@lru_cache(maxsize=1)
def default_case() -> ConformanceCase:
    """:func:`synthetic_case` with its defaults, built once per process."""
    return synthetic_case()
