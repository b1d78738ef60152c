"""The conformance case: a trained model and the task unlearned from it.

The default (:func:`synthetic_case`) assumes nothing about images: a tiny ReLU MLP trained on
Gaussian clusters of synthetic vectors, forgetting one whole class. Methods that take only
language models default to :func:`text_case`: ``tiny_llama`` fine-tuned on a few ``tofu_synth``
people until it reproduces their answers, forgetting one person.

Measured (2 shared CPU cores, ``OMP_NUM_THREADS=1``): :func:`text_case` with its defaults builds
in 3-6 s (forget answer-token cross-entropy ≈ 0.02, retain ≈ 0.02).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from functools import lru_cache

import torch
from torch import nn

from obliviate.data.tofu_synth import tofu_synth
from obliviate.models.lm import tiny_llama
from obliviate.train import TrainConfig, fit
from obliviate.unlearn import TensorSet, Unlearner, UnlearnTask, make_text_task, task_loss
from obliviate.unlearn.text_task import text_set


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


def text_case(
    *,
    n_people: int = 3,
    epochs: int = 40,
    lr: float = 3e-3,
    batch_size: int = 8,
    max_length: int = 128,
    seed: int = 0,
) -> ConformanceCase:
    """A language-model case: :func:`~obliviate.models.lm.tiny_llama` fine-tuned (AdamW, answer
    tokens only) on the QA pairs of ``n_people`` trained ``tofu_synth`` people, forgetting every
    pair of the first one; the task is a :func:`~obliviate.unlearn.make_text_task` text task with
    retain = the other people. Deterministic under ``seed``. (Byte-level tokens: a tofu_synth
    question and answer take about 80-120 tokens, hence ``max_length`` 128.)"""
    lm = tiny_llama(seed=seed)
    ds = tofu_synth(seed=seed, n_trained=n_people, n_holdout=0, n_reserve=0)
    first = ds.parts["trained"][0]
    forget = [p.id for p in ds.pairs if p.group == first]
    task = make_text_task(lm, ds, forget, seed=0, max_length=max_length)
    train = text_set(lm, ds, [p.id for p in ds.pairs_of("trained")], max_length)
    model = lm.model
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(train), generator=g)
        for i in range(0, len(train), batch_size):
            loss = task_loss(model, train.batch(perm[i : i + batch_size]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    for p in model.parameters():
        p.grad = None
    return ConformanceCase(model, task)


@lru_cache(maxsize=1)
def default_text_case() -> ConformanceCase:
    """:func:`text_case` with its defaults, built once per process."""
    return text_case()
