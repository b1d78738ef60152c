"""Semantic checks of a scenario, beyond types: registered names, config options, cross-references.

Every check returns ``(location, message)`` pairs; the schema maps each location onto its file
and line. Config options (training, each method's ``config``, healing ``options``) are checked
key by key against their config dataclasses, so one bad option does not hide the others.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from obliviate.attacks.requests import REQUEST_STRATEGIES
from obliviate.config import build_config, validate_config
from obliviate.data import DATASETS
from obliviate.defenses.healing import HealConfig
from obliviate.defenses.similarity import SIMILARITIES
from obliviate.errors import ConfigError, ObliviateError
from obliviate.models import MODELS
from obliviate.scenarios.specs import FileRequest, Loc, StrategyRequest
from obliviate.steps import POOLS
from obliviate.train import TrainConfig
from obliviate.unlearn import UNLEARNERS
from obliviate.unlearn.tune import TUNE_SCORERS, resolve_space

if TYPE_CHECKING:
    from obliviate.scenarios.schema import Scenario

Problems = list[tuple[Loc, str]]


def config_problems(cls: type, values: Mapping[str, Any], loc: Loc) -> Problems:
    """Per-key checks of ``values`` against config dataclass ``cls`` (unknown keys, types)."""
    out: Problems = []
    names = {f.name for f in dataclasses.fields(cls)}
    good: dict[str, Any] = {}
    for k, v in values.items():
        if k not in names:
            out.append((loc + (k,), f"unknown option for {cls.__name__}; known: {sorted(names)}"))
            continue
        try:
            validate_config(build_config(cls, {k: v}))
            good[k] = v
        except ObliviateError as e:
            out.append((loc + (k,), str(e)))
    if not out:
        try:
            validate_config(build_config(cls, good))
        except ObliviateError as e:
            out.append((loc, str(e)))
    return out


def has_stop_rule(config_cls: type) -> bool:
    """Whether an unlearner's config has the matched-forgetting option ``stop_forget_acc``."""
    return any(f.name == "stop_forget_acc" for f in dataclasses.fields(config_cls))


def semantic_problems(scn: Scenario) -> Problems:
    """Checks beyond types: registered names, option keys of configs, cross-references.

    The audit section validated itself through :class:`obliviate.audit.AuditConfig`.
    """
    p: Problems = []
    if scn.dataset.name not in DATASETS:
        p.append((("dataset", "name"), f"unknown dataset; known: {DATASETS.names()}"))
    if scn.model.name not in MODELS:
        p.append((("model", "name"), f"unknown model; known: {MODELS.names()}"))
    if "seed" in scn.training:
        p.append(
            (("training", "seed"), "the training seed is the run's seed: list seeds in `seeds`")
        )
    else:
        p += config_problems(TrainConfig, scn.training, ("training",))
    if len(set(scn.seeds)) != len(scn.seeds):
        p.append((("seeds",), f"duplicate seeds in {scn.seeds}"))
    if scn.independent_requests and scn.attack_model == "gold":
        p.append(
            (("attack_model",), "independent requests are scored with the original model only")
        )
    p += _request_problems(scn)
    seen: dict[str, int] = {}
    p += _method_problems(scn, seen)
    p += _healing_problems(scn, seen)
    p += _matched_problems(scn, seen)
    p += _tune_problems(scn, seen)
    return p


def _request_problems(scn: Scenario) -> Problems:
    p: Problems = []
    for i, r in enumerate(scn.requests):
        if isinstance(r, StrategyRequest) and r.strategy not in REQUEST_STRATEGIES:
            p.append(
                (
                    ("requests", i, "strategy"),
                    f"unknown strategy; known: {sorted(REQUEST_STRATEGIES)}",
                )
            )
        if isinstance(r, FileRequest) and not (scn.base_dir / r.file).is_file():
            p.append((("requests", i, "file"), f"file {scn.base_dir / r.file} does not exist"))
    return p


def _method_problems(scn: Scenario, seen: dict[str, int]) -> Problems:
    """Checks of ``methods``; fills ``seen`` (method key → index) for the cross-references."""
    p: Problems = []
    for i, m in enumerate(scn.methods):
        loc: Loc = ("methods", i)
        if m.key in seen:
            p.append(
                (loc + ("label" if m.label else "name",), f"duplicate method {m.key!r}: set label")
            )
        seen[m.key] = i
        if m.name not in UNLEARNERS:
            p.append((loc + ("name",), f"unknown unlearning method; known: {UNLEARNERS.names()}"))
            continue
        cls = UNLEARNERS.get(m.name)
        p += config_problems(cls.Config, m.config, loc + ("config",))
        if m.ensemble is not None and "needs_ensemble" not in cls.tags:
            p.append((loc + ("ensemble",), f"method {m.name!r} does not unlearn an ensemble"))
        if m.key in ("original", "gold"):
            p.append((loc + ("label",), f"{m.key!r} is reserved for the reference rows"))
    return p


def _healing_problems(scn: Scenario, seen: Mapping[str, int]) -> Problems:
    h = scn.defenses.healing
    if h is None:
        return []
    p: Problems = []
    for j, k in enumerate(h.methods or []):
        if k not in seen:
            p.append((("defenses", "healing", "methods", j), f"no method {k!r} in `methods`"))
    p += config_problems(HealConfig, h.options, ("defenses", "healing", "options"))
    for field, names in (("pools", sorted(POOLS)), ("similarities", sorted(SIMILARITIES))):
        for j, v in enumerate(getattr(h, field)):
            if v not in names:
                p.append((("defenses", "healing", field, j), f"unknown {v!r}; known: {names}"))
    return p


def _matched_problems(scn: Scenario, seen: Mapping[str, int]) -> Problems:
    mf = scn.matched_forgetting
    if mf is None:
        return []
    p: Problems = []
    for j, k in enumerate(mf.methods or []):
        loc: Loc = ("matched_forgetting", "methods", j)
        if k not in seen:
            p.append((loc, f"no method {k!r} in `methods`"))
        elif scn.methods[seen[k]].name in UNLEARNERS and not has_stop_rule(
            UNLEARNERS.get(scn.methods[seen[k]].name).Config
        ):
            p.append((loc, f"method {k!r} has no stopping rule (no option stop_forget_acc)"))
    for i, m in enumerate(scn.methods):
        for opt_name in ("stop_forget_acc", "stop_at_val_acc"):
            if opt_name not in m.config or not (mf.methods is None or m.key in mf.methods):
                continue
            p.append(
                (
                    ("methods", i, "config", opt_name),
                    "set by `matched_forgetting` (gold's forget accuracy + margin_pp); "
                    "remove it here or list the other methods in matched_forgetting.methods",
                )
            )
    return p


def _tune_problems(scn: Scenario, seen: Mapping[str, int]) -> list[tuple[Loc, str]]:
    """Checks of the ``tune`` step: a tuning seed apart from the report seeds, known methods,
    scorer and space options."""
    t = scn.tune
    if t is None:
        return []
    p: list[tuple[Loc, str]] = []
    if t.seed in scn.seeds:
        p.append((("tune", "seed"), f"tuning seed {t.seed} is also a report seed (seeds: "
                  f"{scn.seeds}); report on other seeds"))  # fmt: skip
    if t.scorer not in TUNE_SCORERS:
        p.append((("tune", "scorer"), f"unknown scorer; known: {TUNE_SCORERS.names()}"))
    for field in ("methods", "exclude"):
        keys = getattr(t, field)
        for j, k in enumerate([] if keys == "all" else keys):
            if k not in seen:
                p.append((("tune", field, j), f"no method {k!r} in `methods`"))
    for k, over in t.space.items():  # a registered name not run here is checked, then unused
        if k not in seen and k not in UNLEARNERS:
            p.append((("tune", "space", k), f"no method {k!r} in `methods` or the registry"))
            continue
        try:
            resolve_space(scn.methods[seen[k]].name if k in seen else k, over)
        except ConfigError as e:
            p.append((("tune", "space", k), str(e)))
    for j, k in enumerate([] if t.methods == "all" else t.methods):
        name = scn.methods[seen[k]].name if k in seen else None
        if name in UNLEARNERS and k not in t.space and not resolve_space(name):
            p.append((("tune", "methods", j), f"method {k!r} declares no search space: give "
                      "one in tune.space"))  # fmt: skip
    return p


__all__ = ["config_problems", "has_stop_rule", "semantic_problems"]
