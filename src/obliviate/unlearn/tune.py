"""Hyper-parameter search for unlearning methods, scored by Avg. Gap to the gold model.

RURK (Hsu et al. 2025) and SalUn tune every method against the retrained model; the pitfall the
peer toolkits show is reporting numbers on the seed the search used. :func:`tune` therefore runs
on a *tuning task* (its own seed); report results on other seeds.

Search spaces: a method class may define ``search_space: ClassVar[dict[str, list]]``; otherwise
:data:`SEARCH_SPACES` below, else learning rate × epochs for the fine-tuning family.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from obliviate.errors import ConfigError
from obliviate.metrics import accuracy, avg_gap, mia_efficacy
from obliviate.unlearn.base import UNLEARNERS, GradientUnlearner, create_unlearner
from obliviate.unlearn.task import TensorSet, UnlearnTask

SEARCH_SPACES: dict[str, dict[str, list[Any]]] = {
    "finetune": {"lr": [0.01, 0.03, 0.1], "epochs": [2, 5, 10]},
    "grad_ascent": {"lr": [1e-4, 3e-4, 1e-3, 3e-3], "epochs": [1, 2, 5]},
    "neggrad_plus": {"lr": [0.003, 0.01, 0.03], "alpha": [0.9, 0.95, 0.99], "epochs": [2, 5]},
    "random_label": {"lr": [0.003, 0.01, 0.03], "epochs": [2, 5]},
    "noisy_gd": {"lr": [0.01, 0.03], "sigma": [1e-4, 1e-3], "epochs": [2, 5]},
    "eu_k": {"k": [1, 2, 3], "lr": [0.01, 0.03], "epochs": [2, 5]},
    "cf_k": {"k": [1, 2, 3], "lr": [0.01, 0.03], "epochs": [2, 5]},
    "l1_sparse": {"lr": [0.01, 0.03], "gamma": [1e-4, 5e-4], "epochs": [2, 5]},
    "salun": {"lr": [0.003, 0.01, 0.03], "mask_fraction": [0.5], "epochs": [2, 5]},
    "scrub": {"lr": [5e-4, 2e-3, 5e-3], "epochs": [3, 5]},
    "ssd": {"alpha": [1.0, 3.0, 10.0, 30.0], "lam": [0.1, 0.5, 1.0]},
    "fisher": {"alpha": [1e-8, 1e-7, 1e-6, 1e-5]},
    "influence": {"damping": [1e-3, 1e-2, 1e-1], "max_norm": [1.0, 5.0, 20.0]},
    "certified_removal": {"lam": [1e-4, 1e-3, 1e-2]},
}


def search_space(name: str) -> dict[str, list[Any]]:
    """The grid for method ``name`` (only fields its config actually has)."""
    cls = UNLEARNERS.get(name)
    space = getattr(cls, "search_space", None) or SEARCH_SPACES.get(name)
    if space is None and issubclass(cls, GradientUnlearner):
        space = {"lr": [0.003, 0.01, 0.03, 0.1], "epochs": [2, 5]}
    if space is None:
        return {}
    fields = set(create_unlearner(name).get_params())
    return {k: list(v) for k, v in space.items() if k in fields}


@dataclass
class Trial:
    params: dict[str, Any]
    score: float
    metrics: dict[str, float]
    seconds: float


@dataclass
class TuneResult:
    method: str
    best_params: dict[str, Any]
    best_score: float
    trials: list[Trial] = field(default_factory=list)
    tuning_seed: int = 0


def core_metrics(
    model: nn.Module,
    task: UnlearnTask,
    test: TensorSet,
    *,
    seed: int = 0,
    n_max: int = 5000,
    retain_eval_max: int | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Retain, forget and test accuracy, UA and SVC MIA efficacy (percent) — the four Avg. Gap
    inputs of RURK Table 1 (DESIGN.md definitions).

    ``retain_eval_max`` estimates retain accuracy on a seeded subsample of that many retain
    samples (the MIA already samples at most ``n_max``); None uses all of them.
    """
    retain = task._retain  # evaluation reads are not the method's reads
    if retain is None or len(retain) == 0:
        raise ConfigError("core metrics need the task's retain set")
    if retain_eval_max is not None and len(retain) > retain_eval_max:
        g = torch.Generator().manual_seed(seed)
        idx = torch.sort(torch.randperm(len(retain), generator=g)[:retain_eval_max]).values
        retain = TensorSet(retain.x[idx], retain.y[idx], retain.ids[idx])
    f = task.forget
    m = {
        "acc/retain": accuracy(model, retain.x, retain.y, device=device),
        "acc/forget": accuracy(model, f.x, f.y, device=device),
        "acc/test": accuracy(model, test.x, test.y, device=device),
    }
    m["ua"] = 100.0 - m["acc/forget"]
    m["mia_efficacy"] = mia_efficacy(
        model,
        (retain.x, retain.y),
        (test.x, test.y),
        (f.x, f.y),
        n_max=n_max,
        seed=seed,
        device=device,
    )
    return m


def tune(
    name: str,
    model: nn.Module,
    task: UnlearnTask,
    score: Callable[[nn.Module, dict[str, Any]], tuple[float, dict[str, float]]],
    *,
    space: Mapping[str, Sequence[Any]] | None = None,
    strategy: str = "grid",
    n_trials: int = 0,
    seed: int = 0,
    base: Mapping[str, Any] | None = None,
) -> TuneResult:
    """Search ``space`` (default :func:`search_space`) for the params minimising ``score``.

    ``score(unlearned_model, stats) -> (value, metrics)``; lower is better (e.g. Avg. Gap).
    ``strategy="grid"`` tries every combination (the first ``n_trials`` of a seeded shuffle when
    ``n_trials`` > 0); ``"random"`` samples ``n_trials`` combinations with replacement-free
    seeded draws. Diverging trials score ``inf`` and are kept in the record.
    """
    space = dict(space if space is not None else search_space(name))
    base = dict(base or {})
    keys = sorted(space)
    combos = [
        dict(zip(keys, vals, strict=True)) for vals in itertools.product(*(space[k] for k in keys))
    ]
    if not combos:
        combos = [{}]
    rng = random.Random(seed)
    if strategy == "random":
        rng.shuffle(combos)
        combos = combos[: max(1, n_trials or len(combos))]
    elif strategy == "grid":
        if n_trials > 0 and n_trials < len(combos):
            rng.shuffle(combos)
            combos = combos[:n_trials]
    else:
        raise ConfigError(f"strategy must be 'grid' or 'random', got {strategy!r}")
    trials: list[Trial] = []
    for params in combos:
        u = create_unlearner(name, **{**base, **params})
        try:
            res = u.unlearn(model, task)
        except FloatingPointError as e:
            trials.append(Trial(params, math.inf, {"error": str(e)}, 0.0))  # type: ignore[dict-item]
            continue
        value, metrics = score(res.model, res.stats)
        trials.append(Trial(params, float(value), metrics, float(res.stats["seconds"])))
    best = min(trials, key=lambda t: t.score)
    return TuneResult(name, {**base, **best.params}, best.score, trials, task.seed)


def gap_scorer(
    gold_metrics: Mapping[str, float],
    task: UnlearnTask,
    test: TensorSet,
    seed: int = 0,
    device: str | torch.device = "cpu",
    retain_eval_max: int | None = None,
    n_max: int = 5000,
) -> Callable[[nn.Module, dict[str, Any]], tuple[float, dict[str, float]]]:
    """A ``score`` for :func:`tune`: Avg. Gap of the unlearned model's core metrics to gold's
    (``gold_metrics`` must come from :func:`core_metrics` with the same sizes)."""

    def score(model: nn.Module, stats: dict[str, Any]) -> tuple[float, dict[str, float]]:
        m = core_metrics(
            model,
            task,
            test,
            seed=seed,
            device=device,
            retain_eval_max=retain_eval_max,
            n_max=n_max,
        )
        return avg_gap(m, gold_metrics), m

    return score
