"""Hyper-parameter search for unlearning methods, scored by Avg. Gap to the gold model.

RURK (Hsu et al. 2025) and SalUn tune every method against the retrained model; the pitfall the
peer toolkits show is reporting numbers on the seed the search used. :func:`tune` therefore runs
on a *tuning task* (its own seed); report results on other seeds (a scenario's ``tune:`` step
enforces it).

Search spaces live next to each method (``search_space: ClassVar[SearchSpace]`` on the class,
typed distributions of :mod:`obliviate.unlearn.space`); a gradient method without one gets
:data:`DEFAULT_GRADIENT_SPACE`. The search is Optuna's: a :class:`optuna.samplers.GridSampler`
(seeded order) where the space is a grid, else a seeded :class:`optuna.samplers.TPESampler`.
Trials run one after another, so a study with the same seed, space and task is reproducible. A
study may be kept in a SQLite file (``storage="sqlite:///…"``), never in the results store; a
killed study resumes there with its remaining trials (a resumed TPE study draws other points
than an unbroken one would).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch
from torch import nn

from obliviate._io import hash_parts
from obliviate.config import check_value
from obliviate.errors import ConfigError
from obliviate.metrics import accuracy, avg_gap, mia_efficacy
from obliviate.registry import Registry
from obliviate.unlearn.base import UNLEARNERS, GradientUnlearner, create_unlearner
from obliviate.unlearn.space import (
    Distribution,
    FloatRange,
    IntRange,
    SearchSpace,
    as_distribution,
    grid_size,
    is_grid,
    plain,
)
from obliviate.unlearn.task import TensorSet, UnlearnTask

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: Space of a :class:`GradientUnlearner` that declares none.
DEFAULT_GRADIENT_SPACE: SearchSpace = {"lr": FloatRange(0.003, 0.1, log=True), "epochs": [2, 5]}
#: Most trials one study may ask for (``n_trials``, ``tune --trials``).
TRIALS_MAX = 100_000
#: Trials of a sampled (non-grid) space when ``n_trials`` is 0.
DEFAULT_TRIALS = 16
#: ``auto``/``grid``: enumerate a grid (seeded order), TPE otherwise; ``random``: a grid's seeded
#: subset, Optuna's RandomSampler otherwise; ``tpe``: TPE always.
STRATEGIES = ("auto", "grid", "random", "tpe")

#: ``score(unlearned_model, stats) -> (value, metrics)``; lower is better.
Score = Callable[[nn.Module, dict[str, Any]], tuple[float, dict[str, float]]]


def search_space(name: str) -> SearchSpace:
    """Method ``name``'s declared space, restricted to the options its config actually has."""
    cls = UNLEARNERS.get(name)
    space = getattr(cls, "search_space", None)
    if not space and issubclass(cls, GradientUnlearner):
        space = DEFAULT_GRADIENT_SPACE
    if not space:
        return {}
    fields = set(create_unlearner(name).get_params())
    return {
        k: as_distribution(v, f"{name}.search_space.{k}") for k, v in space.items() if k in fields
    }


def resolve_space(name: str, overrides: Mapping[str, Any] | None = None) -> SearchSpace:
    """:func:`search_space` of ``name`` with ``overrides`` merged option by option: a value is a
    list or ``{low, high, log}``; ``None`` removes the option. An unknown option raises."""
    space = search_space(name)
    fields = set(create_unlearner(name).get_params())
    for k, v in (overrides or {}).items():
        if k not in fields:
            raise ConfigError(
                f"method {name!r} has no option {k!r} to tune; known: {sorted(fields)}"
            )
        if v is None:
            space.pop(k, None)
        else:
            space[k] = as_distribution(v, f"search space of {name}.{k}")
    return space


def space_json(space: Mapping[str, Distribution]) -> dict[str, Any]:
    """JSON form of a space, keys sorted (for hashes, records and study names)."""
    return {k: plain(space[k]) for k in sorted(space)}


#: Back-compatible view of the declared spaces, ``{method: space}`` (registered at import).
SEARCH_SPACES: dict[str, SearchSpace] = {
    n: dict(UNLEARNERS.get(n).search_space)  # type: ignore[attr-defined]
    for n in UNLEARNERS.names()
    if getattr(UNLEARNERS.get(n), "search_space", None)
}


@dataclass
class Trial:
    params: dict[str, Any]
    score: float
    metrics: dict[str, Any]
    seconds: float


@dataclass
class TuneResult:
    method: str
    best_params: dict[str, Any]
    best_score: float
    trials: list[Trial] = field(default_factory=list)
    tuning_seed: int = 0
    sampler: str = "grid"
    study_name: str = ""


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


def make_sampler(
    space: Mapping[str, Distribution], strategy: str, seed: int, n_trials: int
) -> tuple[optuna.samplers.BaseSampler, int, str]:
    """(sampler, number of trials, sampler name) for ``strategy`` (see :data:`STRATEGIES`)."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    check_value("n_trials", n_trials, int, ge=0, le=TRIALS_MAX)
    if is_grid(space) and strategy != "tpe":
        size = int(grid_size(space))
        grid = {k: list(v) for k, v in space.items()}  # type: ignore[arg-type]
        return optuna.samplers.GridSampler(grid, seed=seed), min(n_trials or size, size), "grid"
    n = n_trials or DEFAULT_TRIALS
    if strategy == "random":
        return optuna.samplers.RandomSampler(seed=seed), n, "random"
    return optuna.samplers.TPESampler(seed=seed), n, "tpe"


def _suggest(trial: optuna.Trial, name: str, dist: Distribution) -> Any:
    if isinstance(dist, FloatRange):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log)
    if isinstance(dist, IntRange):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log)
    return trial.suggest_categorical(name, list(dist))


def tune(
    name: str,
    model: nn.Module,
    task: UnlearnTask,
    score: Score,
    *,
    space: Mapping[str, Any] | None = None,
    strategy: str = "grid",
    n_trials: int = 0,
    seed: int = 0,
    base: Mapping[str, Any] | None = None,
    storage: str | None = None,
    study_name: str | None = None,
) -> TuneResult:
    """Search ``space`` (default :func:`search_space`) for the params minimising ``score``.

    ``score(unlearned_model, stats) -> (value, metrics)``; lower is better (e.g. Avg. Gap).
    ``strategy`` (:data:`STRATEGIES`) picks the sampler; ``n_trials`` = 0 runs a whole grid (or
    :data:`DEFAULT_TRIALS` samples). Trials run sequentially with a seeded sampler, so the same
    call gives the same trials. ``base`` holds fixed options (a trial's values win). Diverging
    trials (``FloatingPointError``) score ``inf`` and stay in the record. ``storage`` (e.g.
    ``"sqlite:///study.db"``) keeps the Optuna study there under ``study_name`` (default: a hash
    of method, space, base, strategy, trials and seed) and resumes its completed trials.
    """
    sp = {k: as_distribution(v, f"search space of {name}.{k}") for k, v in
          (space if space is not None else search_space(name)).items()}  # fmt: skip
    base = dict(base or {})
    sampler, n, kind = make_sampler(sp, strategy, seed, n_trials)
    if study_name is None:
        h = hash_parts(repr((name, space_json(sp), sorted(base.items()), kind, n, seed)))
        study_name = f"{name}-{h[:16]}"
    study = optuna.create_study(
        study_name=study_name, storage=storage, sampler=sampler, load_if_exists=True
    )

    def objective(trial: optuna.Trial) -> float:
        params = {k: _suggest(trial, k, sp[k]) for k in sorted(sp)}
        u = create_unlearner(name, **{**base, **params})
        try:
            res = u.unlearn(model, task)
        except FloatingPointError as e:
            trial.set_user_attr("metrics", {"error": str(e)})
            trial.set_user_attr("seconds", 0.0)
            return math.inf
        value, metrics = score(res.model, res.stats)
        trial.set_user_attr("metrics", {k: v for k, v in metrics.items() if _finite(v)})
        trial.set_user_attr("seconds", float(res.stats["seconds"]))
        value = float(value)
        return value if not math.isnan(value) else math.inf

    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if n > len(done):
        study.optimize(objective, n_trials=n - len(done), n_jobs=1, gc_after_trial=False)
    trials = [
        Trial(
            dict(t.params),
            float(t.value),
            t.user_attrs.get("metrics", {}),  # type: ignore[arg-type]
            float(t.user_attrs.get("seconds", 0.0)),
        )  # fmt: skip
        for t in study.trials
        if t.state == optuna.trial.TrialState.COMPLETE
    ][:n]
    if not trials:
        raise ConfigError(f"tuning {name!r} ran no trial")
    best = min(trials, key=lambda t: t.score)
    return TuneResult(
        name, {**base, **best.params}, best.score, trials, task.seed, kind, study_name
    )


def _finite(v: Any) -> bool:
    return not isinstance(v, float) or math.isfinite(v)


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


#: ``factory(gold_model, task, test, *, seed, device, eval_max) -> Score``: how a tuning trial
#: is scored (a scenario's ``tune.scorer``). ``eval_max`` caps the retain, test and MIA samples.
ScorerFactory = Callable[..., Score]
TUNE_SCORERS: Registry[ScorerFactory] = Registry("tuning scorer")


@TUNE_SCORERS.register("avg_gap", help="Avg. Gap of retain/forget/test accuracy and MIA to gold")
def avg_gap_scorer(
    gold: nn.Module,
    task: UnlearnTask,
    test: TensorSet,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    eval_max: int | None = None,
) -> Score:
    """:func:`gap_scorer` against ``gold``'s :func:`core_metrics`; with ``eval_max`` the test
    set is a seeded subsample of that many images and retain accuracy and the MIA use at most as
    many (so that scoring costs about as much as the unlearning it scores)."""
    if eval_max is not None and len(test) > eval_max:
        g = torch.Generator().manual_seed(seed)
        keep = torch.sort(torch.randperm(len(test), generator=g)[:eval_max]).values
        test = TensorSet(test.x[keep], test.y[keep], test.ids[keep])
    kw: dict[str, Any] = {"seed": seed, "device": device, "retain_eval_max": eval_max}
    if eval_max is not None:
        kw["n_max"] = eval_max
    gm = core_metrics(gold, task, test, **kw)
    return gap_scorer(gm, task, test, **kw)


__all__ = [
    "DEFAULT_GRADIENT_SPACE",
    "TRIALS_MAX",
    "SEARCH_SPACES",
    "STRATEGIES",
    "TUNE_SCORERS",
    "Trial",
    "TuneResult",
    "avg_gap_scorer",
    "core_metrics",
    "gap_scorer",
    "make_sampler",
    "resolve_space",
    "search_space",
    "space_json",
    "tune",
]
