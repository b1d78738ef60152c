"""A scenario's ``tune:`` step: hyper-parameters chosen on a tuning seed, reported on others.

RURK (Hsu et al. 2025, App. B) and SalUn (Fan et al. 2024) tune every method by its gap to the
retrained model; DESIGN.md asks that the numbers reported never come from the seed the choice
was made on. The runner therefore, before the report seeds:

1. builds the tuning seed's own original, request 0 of the sequence and its gold model (the
   runner's cached steps: a later run, or a report seed sharing them, reuses them);
2. for each tuned method, searches its space (declared next to the method, merged with the
   scenario's ``tune.space`` overrides) with :func:`obliviate.unlearn.tune.tune` — Optuna,
   seeded, sequential trials — scored by ``tune.scorer`` (Avg. Gap to gold by default); the
   outcome is cached as a ``tuned`` JSON artifact keyed by the method, its fixed config, the
   space, the search settings and the keys of the models and request it was tuned on;
3. runs the report seeds with each method's config updated by its best params.

Tuning trials never become result rows; each unlearn row of a tuned method records the chosen
params in ``info.tuned`` and its ``config_hash`` includes the tuning record's key, so a changed
search space invalidates the row. With ``tune.study`` the Optuna study is also kept in
``<cache>/studies/<scenario config hash>.db`` (SQLite; never inside the results store).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from obliviate._io import atomic_write_json
from obliviate.data import ImageDataset, Split
from obliviate.errors import ConfigError
from obliviate.scenarios.cache import ArtifactCache
from obliviate.scenarios.schema import MethodSpec, Scenario, TuneSpec
from obliviate.unlearn import TensorSet, make_task
from obliviate.unlearn.tune import TUNE_SCORERS, resolve_space, space_json, tune


class TuningContext(Protocol):
    """What the tuning step reads of the runner's per-seed context (``RunContext``)."""

    scenario: Scenario
    seed: int
    cache: ArtifactCache
    device: str
    dataset: ImageDataset
    split: Split
    config_hash: str

    def log(self, msg: str) -> None: ...


@dataclass(frozen=True)
class TunedParams:
    """One method's tuning outcome; ``key`` is its cache key (it enters the rows' hash)."""

    method: str
    params: dict[str, Any]
    score: float
    scorer: str
    seed: int
    trials: int
    sampler: str
    space: dict[str, Any]
    key: str

    def info(self) -> dict[str, Any]:
        """What an unlearn row stores under ``info.tuned``."""
        return asdict(self)


def check_tuning_seed(scn: Scenario) -> None:
    """Refuse a run whose report seeds include the tuning seed (naming both)."""
    t = scn.tune
    if t is not None and t.seed in scn.seeds:
        raise ConfigError(
            f"scenario {scn.name!r}: tuning seed {t.seed} is also a report seed (seeds "
            f"{list(scn.seeds)}); report on seeds other than the tuning seed"
        )


def methods_to_tune(scn: Scenario) -> list[MethodSpec]:
    """The methods ``tune`` covers: its list (or, for ``all``, every method whose space is not
    empty), minus ``exclude``."""
    t = scn.tune
    if t is None:
        return []
    if t.methods == "all":
        chosen = [m for m in scn.methods if resolve_space(m.name, t.space.get(m.key))]
    else:
        chosen = [scn.method(k) for k in t.methods]
    return [m for m in chosen if m.key not in t.exclude]


def study_storage(cache: ArtifactCache, config_hash: str) -> str:
    """SQLite URL of a scenario's Optuna studies: ``<cache>/studies/<config hash>.db``."""
    path = cache.root.resolve() / "studies" / f"{config_hash[:16]}.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def tune_methods(
    ctx: TuningContext,
    methods: list[MethodSpec],
    starts: Mapping[str, Any],
    gold: Any,
    req: Any,
) -> dict[str, TunedParams]:
    """Tune each of ``methods`` (configs as the report seeds would run them) on the tuning seed's
    request ``req`` from ``starts[key]`` (an artifact: the original or the SISA ensemble),
    scored against ``gold`` (an artifact). Cached per method; returns ``{key: TunedParams}``."""
    t: TuneSpec | None = ctx.scenario.tune
    if t is None:
        return {}
    task = make_task(
        ctx.dataset,
        req.split,
        req.request,
        seed=ctx.seed,
        device=ctx.device,
        train_config=ctx.scenario.train_config(ctx.seed).to_dict(),
    )
    xt, yt = ctx.dataset.tensors(ctx.split.test)
    test = TensorSet(xt, yt, ctx.split.test)
    scorer = TUNE_SCORERS.get(t.scorer)
    score = None  # built on the first cache miss (it audits gold once)
    storage = study_storage(ctx.cache, ctx.config_hash) if t.study else None
    out: dict[str, TunedParams] = {}
    for m in methods:
        space = resolve_space(m.name, t.space.get(m.key))
        fields = {
            "method": m.name,
            "config": m.config,
            "space": space_json(space),
            "trials": t.trials,
            "strategy": t.strategy,
            "scorer": t.scorer,
            "eval_max": t.eval_max,
            "seed": ctx.seed,
        }
        start = starts[m.key]
        key = ctx.cache.key("tuned", fields, (start.key, gold.key, req.key))
        hit = ctx.cache.lookup("tuned", key, ".json")
        if hit is not None:
            out[m.key] = TunedParams(**json.loads(hit.read_text()))
            ctx.log(f"tune {m.key}: cached {out[m.key].params}")
            continue
        if score is None:
            score = scorer(gold.model, task, test, seed=ctx.seed, device=ctx.device,
                           eval_max=t.eval_max)  # fmt: skip
        res = tune(
            m.name,
            start.model,
            task,
            score,
            space=space,
            strategy=t.strategy,
            n_trials=t.trials,
            seed=ctx.seed,
            base=m.config,
            storage=storage,
            study_name=f"{m.key}-{key[:16]}",
        )
        best = min(res.trials, key=lambda tr: tr.score)
        tp = TunedParams(m.key, dict(best.params), res.best_score, t.scorer, ctx.seed,
                         len(res.trials), res.sampler, space_json(space), key)  # fmt: skip
        atomic_write_json(ctx.cache.path("tuned", key, ".json"), tp.info())
        out[m.key] = tp
        ctx.log(f"tune {m.key}: {tp.params} ({t.scorer} {tp.score:.2f}, {tp.trials} trials)")
    return out


def apply_tuned(scn: Scenario, tuned: Mapping[str, TunedParams]) -> Scenario:
    """``scn`` with each tuned method's config updated by its best params (others unchanged)."""
    methods = [
        m.model_copy(update={"config": {**m.config, **tuned[m.key].params}})
        if m.key in tuned
        else m
        for m in scn.methods
    ]
    return scn.model_copy(update={"methods": methods})


__all__ = [
    "TunedParams",
    "TuningContext",
    "apply_tuned",
    "check_tuning_seed",
    "methods_to_tune",
    "study_storage",
    "tune_methods",
]
