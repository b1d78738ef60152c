"""The scenario runner: DESIGN.md's data flow, every artifact cached, every row stored.

For each seed::

    load data, split ─► train original (cache)
    for each request i of the sequence:
        select request i (ids / file / attack strategy / indirect attack; cache) from the training
          ids not requested before
        gold_i = retrain on train \\ (requests 0..i) (cache)
        audit(original vs gold_i) ─► rows "original", "gold"
        for each method m: v_{i+1}(m) = unlearn request i from v_i(m) (cache; v_0 = the original,
          or the SISA ensemble for ``needs_ensemble`` methods)
          audit(v_{i+1}(m) vs gold_i, with the original) ─► row "unlearn", ledger entry
          for each defense variant (healing pool × similarity × epochs): heal v_{i+1}(m) (cache)
            audit ─► row "heal"

Readings of DESIGN.md where it leaves room (each documented where it is implemented):

* In a sequence, the audit of step ``i`` uses the **cumulative** forget set (requests 0..i): the
  model version ``v_{i+1}`` must have forgotten all of it, and gold_i was retrained without all
  of it. The unlearner itself receives only request ``i`` as its forget set, with retain =
  train \\ (requests 0..i).
* The adversary scores candidates with the original model (``attack_model: original``, the one
  model every method starts from) or with the previous step's gold model (``attack_model:
  gold``); never with a method's own version, so every method faces the same requests and the
  same gold model.
* ``independent_requests: true`` makes the requests alternatives instead of a sequence: each is
  drawn from the whole training split by the original model, has its own gold retrain, and every
  method unlearns it from its starting model (v0), so one method meets several strategies.
* Healing repairs each method's unlearned version; the chain of versions continues from the
  unlearned (not the healed) model, so healing variants never feed each other.
* Cost: an unlearn row's speed-up is gold seconds / unlearn seconds; a heal row's is gold seconds /
  (unlearn + heal seconds), the cost of the whole repair path.

Artifacts are keyed by :meth:`ArtifactCache.key` over exactly the fields that produce them plus
their parents' keys, so a second run reuses everything and a changed field recomputes only its
dependants. Rows carry a ``config_hash`` over the keys of the models audited and the audit
options; a restarted run skips rows already stored with the same hash (kill-and-resume).
Request sources and defenses are pluggable registries (:data:`REQUEST_SOURCES`,
:data:`DEFENSES`).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn

import obliviate
from obliviate._io import atomic_write_json, hash_parts, sha256_file
from obliviate.data import ForgetRequest, ImageDataset, Split, load_dataset, make_split
from obliviate.errors import ConfigError, RequestError
from obliviate.registry import Registry
from obliviate.scenarios.cache import ArtifactCache
from obliviate.scenarios.schema import (
    FileRequest,
    HealingSpec,
    IdsRequest,
    IndirectRequest,
    MethodSpec,
    Scenario,
    StrategyRequest,
    _request_kind,
    canonical_json,
    load_scenario,
)
from obliviate.scenarios.store import ResultsStore

EventFn = Callable[[str, dict[str, Any]], None]
#: Metrics copied into each ledger entry.
LEDGER_METRICS = ("acc/forget", "ua", "acc/retain", "acc/test", "mia_efficacy", "avg_gap")


@dataclass
class Artifact:
    """A model artifact: its cache key and folder, the loaded model and what producing it cost."""

    key: str
    path: Path
    model: nn.Module
    seconds: float
    cached: bool
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepRequest:
    """Request ``index`` of the sequence, with the cumulative forget set up to it."""

    index: int
    key: str
    request: ForgetRequest
    cumulative: ForgetRequest
    source: str
    info: dict[str, Any]
    split: Split  # the split the request was drawn from: train \ (requests before it)


@dataclass
class RunContext:
    """Everything a step function of one seed's run needs."""

    scenario: Scenario
    seed: int
    cache: ArtifactCache
    store: ResultsStore
    device: str
    dataset: ImageDataset
    split: Split
    config_hash: str
    versions: dict[str, Any]
    show_progress: bool = True
    console: Console | None = None
    on_event: EventFn | None = None
    counts: dict[str, int] = field(default_factory=lambda: {"written": 0, "skipped": 0})

    def emit(self, event: str, **payload: Any) -> None:
        if self.on_event is not None:
            self.on_event(event, payload)

    def log(self, msg: str) -> None:
        if self.console is not None:
            self.console.print(f"[dim]seed {self.seed}[/] {msg}")


@dataclass
class RunResult:
    """What :func:`run_scenario` did: rows written vs reused, cache hits and misses, wall time."""

    scenario: str
    seeds: list[int]
    rows_written: int
    rows_skipped: int
    cache: dict[str, dict[str, int]]
    seconds: float
    store_path: Path


# ---------------------------------------------------------------------------- helpers


def derive_seed(seed: int, *parts: str | int) -> int:
    """A 31-bit seed derived from ``seed`` and labels (stable across processes and machines)."""
    h = hashlib.sha256(canonical_json([seed, *parts]).encode()).hexdigest()
    return int(h[:8], 16) & 0x7FFFFFFF


def _plain(o: Any) -> Any:
    """JSON-safe copy of method / defense stats: tensors and arrays become lists (short) or a
    shape string, non-finite floats the string ``"nan"``/``"inf"``, other objects ``str(o)``."""
    if isinstance(o, dict):
        return {str(k): _plain(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_plain(v) for v in o]
    if isinstance(o, torch.Tensor | np.ndarray | np.generic):
        t = torch.as_tensor(np.asarray(o))
        return _plain(t.tolist()) if t.numel() <= 64 else f"tensor{tuple(t.shape)}"
    if isinstance(o, float):
        return o if math.isfinite(o) else str(o)
    if o is None or isinstance(o, bool | int | str):
        return o
    return str(o)


def _remaining_split(split: Split, removed: torch.Tensor) -> Split:
    """``split`` with ``removed`` ids taken out of the training part (for request i > 0)."""
    if len(removed) == 0:
        return split
    return Split(
        train=split.train[~torch.isin(split.train, removed)],
        test=split.test,
        reserve=split.reserve,
        val=split.val,
        dataset_fingerprint=split.dataset_fingerprint,
        spec={**split.spec, "removed_before": len(removed)},
    )


def _class_index(ds: ImageDataset, c: int | str) -> int:
    if isinstance(c, str) and c in ds.class_names:
        return ds.class_names.index(c)
    try:
        ci = int(c)
    except ValueError:
        raise ConfigError(
            f"dataset {ds.name!r} has no class {c!r}; classes: {ds.class_names}"
        ) from None
    if not 0 <= ci < ds.num_classes:
        raise ConfigError(f"class index {ci} out of range [0, {ds.num_classes}) for {ds.name!r}")
    return ci


def _model_artifact(
    ctx: RunContext,
    kind: str,
    key: str,
    compute: Callable[[], tuple[nn.Module, float, dict[str, Any], Callable[[Path], None]]],
    what: str,
) -> Artifact:
    """Load artifact ``kind/key`` from the cache, or compute it, save it and record it.

    The model folder is written first (atomically), then the ``<key>.json`` sidecar (atomically);
    the sidecar marks the artifact complete, so a run killed in between recomputes it.
    """
    side = ctx.cache.lookup(kind, key, ".json")
    path = ctx.cache.path(kind, key)
    if side is not None:
        rec = json.loads(side.read_text())
        model = _load_model(ctx, path, rec["format"])
        ctx.log(f"{what}: cached ({rec['seconds']:.1f} s when computed)")
        return Artifact(key, path, model, float(rec["seconds"]), True, rec.get("stats", {}))
    model, seconds, stats, save = compute()
    save(path)
    fmt = "sisa" if _is_ensemble(model) else "checkpoint"
    atomic_write_json(
        ctx.cache.path(kind, key, ".json"),
        {"format": fmt, "kind": kind, "seconds": seconds, "stats": _plain(stats)},
    )
    ctx.log(f"{what}: {seconds:.1f} s")
    ctx.emit("artifact", kind=kind, key=key)
    return Artifact(key, path, model, seconds, False, _plain(stats))


def _is_ensemble(model: nn.Module) -> bool:
    from obliviate.unlearn.sisa import SisaEnsemble

    return isinstance(model, SisaEnsemble)


def _load_model(ctx: RunContext, path: Path, fmt: str) -> nn.Module:
    if fmt == "sisa":
        from obliviate.unlearn.sisa import load_sisa

        return load_sisa(path, dataset=ctx.dataset, device=ctx.device)
    from obliviate.checkpoint import load_checkpoint

    return load_checkpoint(path, expect_split_hash=ctx.split.hash, device=ctx.device).model


def _saver(
    ctx: RunContext,
    model: nn.Module,
    *,
    kind: str,
    request: ForgetRequest | None,
    parent: Path | None,
    extra: dict[str, Any],
) -> Callable[[Path], None]:
    def save(path: Path) -> None:
        if _is_ensemble(model):
            from obliviate.unlearn.sisa import save_sisa

            save_sisa(model, path)  # type: ignore[arg-type]
            return
        from obliviate.checkpoint import save_checkpoint

        save_checkpoint(
            path,
            model,
            split=ctx.split,
            dataset=ctx.dataset,
            train_config=ctx.scenario.train_config(ctx.seed).to_dict(),
            request=request,
            parent=None if parent is None else str(parent),
            kind=kind,
            extra={"scenario_step": _plain(extra)},
        )

    return save


# ---------------------------------------------------------------------------- steps


def load_data(scn: Scenario, seed: int) -> tuple[ImageDataset, Split]:
    """Step "load": the dataset (optionally class-restricted) and the seeded split."""
    ds = load_dataset(scn.dataset.name, **scn.dataset.kwargs)
    if scn.dataset.classes:
        ds = ds.select_classes(scn.dataset.classes)
    kw = scn.split.model_dump(exclude={"seed"})
    split_seed = seed if scn.split.seed is None else scn.split.seed
    return ds, make_split(ds, seed=split_seed, **kw)


def _recipe(ctx: RunContext) -> dict[str, Any]:
    scn = ctx.scenario
    return {
        "model": scn.model.model_dump(mode="json"),
        "training": ctx.scenario.train_config(ctx.seed).to_dict(),
        "split": ctx.split.hash,
        "obliviate": obliviate.__version__,
    }


def _train_scenario_model(ctx: RunContext, exclude: Any = None):  # type: ignore[no-untyped-def]
    """The scenario model, trained with its recipe and the run's seed on the training split minus
    ``exclude``."""
    from obliviate.train import train_model

    scn = ctx.scenario
    return train_model(
        ctx.dataset,
        ctx.split,
        scn.model.name,
        scn.train_config(ctx.seed),
        model_kwargs=scn.model.kwargs,
        exclude=exclude,
        device=ctx.device,
        show_progress=ctx.show_progress,
    )


def train_original(ctx: RunContext) -> Artifact:
    """Step "train": the original model on the whole training split (cached)."""
    key = ctx.cache.key("original", _recipe(ctx))

    def compute() -> tuple[nn.Module, float, dict[str, Any], Callable[[Path], None]]:
        tm = _train_scenario_model(ctx)
        stats = {"metrics": tm.metrics, "steps": tm.history.steps}

        def save(path: Path) -> None:
            tm.save(str(path), kind="trained", extra={"scenario_step": {"key": key}})

        return tm.model, tm.history.seconds, stats, save

    return _model_artifact(ctx, "original", key, compute, "train original")


def train_gold(ctx: RunContext, original: Artifact, req: StepRequest) -> Artifact:
    """Step "gold": the original's exact recipe on train \\ (requests 0..i) (cached)."""
    key = ctx.cache.key("gold", {"cumulative": req.cumulative.hash}, (original.key,))

    def compute() -> tuple[nn.Module, float, dict[str, Any], Callable[[Path], None]]:
        tm = _train_scenario_model(ctx, exclude=req.cumulative)

        def save(path: Path) -> None:
            tm.save(
                str(path),
                kind="gold",
                parent=str(original.path),
                extra={"scenario_step": {"key": key, "step_index": req.index}},
            )

        return tm.model, tm.history.seconds, {"metrics": tm.metrics}, save

    return _model_artifact(ctx, "gold", key, compute, f"req {req.index} · gold retrain")


def train_ensemble(ctx: RunContext, method: MethodSpec) -> Artifact:
    """The SISA ensemble a ``needs_ensemble`` method starts from (cached), with the original's
    recipe; shards/slices/aggregation from the method's ``ensemble`` (defaults 5 × 5, vote)."""
    from obliviate.scenarios.schema import EnsembleSpec
    from obliviate.unlearn.sisa import train_sisa_model

    ens = method.ensemble or EnsembleSpec()
    key = ctx.cache.key("ensemble", {**_recipe(ctx), "ensemble": ens.model_dump()})

    def compute() -> tuple[nn.Module, float, dict[str, Any], Callable[[Path], None]]:
        scn = ctx.scenario
        t0 = time.perf_counter()
        model = train_sisa_model(
            ctx.dataset,
            ctx.split,
            scn.model.name,
            scn.train_config(ctx.seed),
            shards=ens.shards,
            slices=ens.slices,
            aggregation=ens.aggregation,
            model_kwargs=scn.model.kwargs,
            seed=ctx.seed,
            device=ctx.device,
            keep_data=False,
            show_progress=ctx.show_progress,
        )
        seconds = time.perf_counter() - t0
        return (
            model,
            seconds,
            {"shards": ens.shards, "slices": ens.slices},
            _saver(ctx, model, kind="ensemble", request=None, parent=None, extra={}),
        )

    return _model_artifact(ctx, "ensemble", key, compute, f"{method.key}: SISA training")


# ---------------------------------------------------------------------------- request sources

#: ``fn(ctx, spec, step_split, attack_model, seed) -> (ForgetRequest, info)`` per request form.
RequestSource = Callable[
    [RunContext, Any, Split, nn.Module, int], tuple[ForgetRequest, dict[str, Any]]
]
REQUEST_SOURCES: Registry[RequestSource] = Registry("request source")


@REQUEST_SOURCES.register("ids", needs_model=False)
def _ids_source(
    ctx: RunContext, spec: IdsRequest, split: Split, model: nn.Module, seed: int
) -> tuple[ForgetRequest, dict[str, Any]]:
    return ForgetRequest(spec.ids, name=spec.name or "ids"), {}


@REQUEST_SOURCES.register("file", needs_model=False)
def _file_source(
    ctx: RunContext, spec: FileRequest, split: Split, model: nn.Module, seed: int
) -> tuple[ForgetRequest, dict[str, Any]]:
    path = ctx.scenario.base_dir / spec.file
    req = ForgetRequest.load(path)
    return ForgetRequest(req.ids, name=spec.name or req.name or path.name, meta=req.meta), {
        "file": str(path)
    }


@REQUEST_SOURCES.register("strategy", needs_model=True)
def _strategy_source(
    ctx: RunContext, spec: StrategyRequest, split: Split, model: nn.Module, seed: int
) -> tuple[ForgetRequest, dict[str, Any]]:
    from obliviate.attacks.requests import select_request

    classes = None if spec.classes is None else [_class_index(ctx.dataset, c) for c in spec.classes]
    sel = select_request(
        spec.strategy,
        model,
        ctx.dataset,
        split,
        budget=spec.budget,
        seed=seed,
        classes=classes,
        device=ctx.device,
        **spec.options,
    )
    info = {"strategy": spec.strategy, "budget": spec.budget, "classes": classes}
    score = getattr(sel, "score", None)
    if isinstance(score, int | float):
        info["score"] = float(score)
    details = getattr(sel, "details", None) or {}
    info["details"] = {
        k: v for k, v in _plain(details).items() if isinstance(v, int | float | str | bool)
    }
    req = sel.request
    return ForgetRequest(req.ids, name=spec.name or req.name or spec.strategy, meta=req.meta), info


@REQUEST_SOURCES.register("indirect", needs_model=True)
def _indirect_source(
    ctx: RunContext, spec: IndirectRequest, split: Split, model: nn.Module, seed: int
) -> tuple[ForgetRequest, dict[str, Any]]:
    from obliviate.attacks.indirect import select_indirect

    ind = spec.indirect
    victim = _class_index(ctx.dataset, ind.victim_class)
    sel = select_indirect(
        model, ctx.dataset, split, victim, mode=ind.mode, by=ind.by, seed=seed, **ind.options
    )
    forget_class = getattr(sel, "forget_class", None)
    info = {
        "victim_class": victim,
        "victim_class_name": ctx.dataset.class_names[victim],
        "forget_class": None if forget_class is None else int(forget_class),
        "by": ind.by,
        "mode": ind.mode,
    }
    req = sel.request
    name = spec.name or f"indirect-victim-{ctx.dataset.class_names[victim]}"
    return ForgetRequest(req.ids, name=name, meta=req.meta), info


def select_requests(
    ctx: RunContext, original: Artifact, golds: dict[int, Artifact]
) -> Iterator[StepRequest]:
    """Yield the sequence's requests one by one (cached as JSON); request ``i`` is drawn from the
    training ids not requested before and validated against them. ``golds`` is filled by the
    caller as the sequence advances (``attack_model: gold`` reads ``golds[i - 1]``)."""
    scn = ctx.scenario
    indep = scn.independent_requests  # alternatives: every request from the whole split
    removed = torch.empty(0, dtype=torch.int64)
    prev: list[str] = []
    for i, spec in enumerate(scn.requests):
        kind = _request_kind(spec)
        assert kind is not None
        needs_model = bool(REQUEST_SOURCES.meta(kind).get("needs_model"))
        step_split = ctx.split if indep else _remaining_split(ctx.split, removed)
        attacker = original if (i == 0 or indep or scn.attack_model == "original") else golds[i - 1]
        fields: dict[str, Any] = {
            "spec": spec.model_dump(mode="json"),
            "index": i,
            "seed": ctx.seed,
            "split": ctx.split.hash,
        }
        if isinstance(spec, FileRequest):
            fields["file_sha256"] = sha256_file(scn.base_dir / spec.file)
        parents = (*prev, attacker.key) if needs_model else tuple(prev)
        key = ctx.cache.key("request", fields, parents)
        hit = ctx.cache.lookup("request", key, ".json")
        if hit is not None:
            rec = json.loads(hit.read_text())
            req = ForgetRequest(rec["ids"], name=rec["name"], meta=rec["meta"])
            info = rec["info"]
            ctx.log(f"req {i} · {kind} request of {len(req)} ids: cached")
        else:
            t0 = time.perf_counter()
            req, info = REQUEST_SOURCES.get(kind)(
                ctx, spec, step_split, attacker.model, derive_seed(ctx.seed, "request", i)
            )
            info = {**_plain(info), "seconds": time.perf_counter() - t0}
            atomic_write_json(
                ctx.cache.path("request", key, ".json"),
                {**req.to_dict(), "meta": _plain(req.meta), "info": info},
            )
            ctx.log(f"req {i} · {kind} request of {len(req)} ids ({info['seconds']:.1f} s)")
            ctx.emit("artifact", kind="request", key=key)
        try:
            req.validate(step_split)
        except RequestError as e:
            raise RequestError(
                f"scenario {scn.name!r}, request {i} ({kind}): {e}"
                + (
                    " (ids requested by an earlier request count as gone)"
                    if i and not indep
                    else ""
                )
            ) from None
        removed = req.tensor if indep else torch.cat([removed, req.tensor])
        cumulative = ForgetRequest(
            torch.sort(removed).values,
            name=f"request {i}" if indep else f"requests 0..{i}",
            meta={"steps": 1 if indep else i + 1},
        )
        info = {**info, "source": kind, "size": len(req), "name": req.name}
        yield StepRequest(i, key, req, cumulative, kind, info, step_split)
        if not indep:
            prev.append(key)


# ---------------------------------------------------------------------------- unlearn, heal


def unlearn_step(
    ctx: RunContext, method: MethodSpec, parent: Artifact, req: StepRequest
) -> Artifact:
    """Step "unlearn": model version ``v_{i+1}`` of ``method`` from ``v_i`` (cached)."""
    from obliviate.unlearn import create_unlearner, make_task

    u = create_unlearner(method.name, **method.config)
    fields = {"method": method.name, "params": _plain(u.get_params()), "seed": ctx.seed}
    key = ctx.cache.key("unlearned", fields, (parent.key, req.key))

    def compute() -> tuple[nn.Module, float, dict[str, Any], Callable[[Path], None]]:
        task = make_task(
            ctx.dataset,
            req.split,
            req.request,
            seed=ctx.seed,
            device=ctx.device,
            train_config=ctx.scenario.train_config(ctx.seed).to_dict(),
        )
        res = u.unlearn(parent.model, task)
        extra = {"method": method.name, "params": u.get_params(), "stats": res.stats}
        save = _saver(
            ctx, res.model, kind="unlearned", request=req.cumulative, parent=parent.path,
            extra=extra,
        )  # fmt: skip
        return res.model, float(res.stats["seconds"]), res.stats, save

    return _model_artifact(
        ctx, "unlearned", key, compute, f"req {req.index} · unlearn {method.key} (v{req.index + 1})"
    )


#: Healing pools for which the similarity matters (one variant per similarity).
SIMILARITY_POOLS = frozenset({"twins"})

#: ``fn(ctx, spec, method, unlearned, original, req) -> [(variant, Artifact, info), ...]``.
Defense = Callable[..., list[tuple[str, Artifact, dict[str, Any]]]]
DEFENSES: Registry[Defense] = Registry("scenario defense")


@DEFENSES.register("healing")
def healing_variants(
    ctx: RunContext,
    spec: HealingSpec,
    method: MethodSpec,
    unlearned: Artifact,
    original: Artifact,
    req: StepRequest,
) -> list[tuple[str, Artifact, dict[str, Any]]]:
    """Healing (arXiv 2507.10886): fine-tune the unlearned model on the remaining data plus a
    pool (``twins`` of the forgotten samples by a similarity, random ``spares``, or ``none``:
    remaining data only) for each number of epochs; ``options`` build its ``HealConfig``.
    Variant names: ``pool/similarity/eE`` for twins, ``pool/eE`` otherwise."""
    from obliviate.config import build_config
    from obliviate.defenses.healing import HealConfig, heal

    config = build_config(HealConfig, spec.options)
    out = []
    for pool in spec.pools:
        sims = spec.similarities if pool in SIMILARITY_POOLS else spec.similarities[:1]
        for sim in sims:
            for epochs in spec.epochs:
                variant = (
                    f"{pool}/{sim}/e{epochs}" if pool in SIMILARITY_POOLS else f"{pool}/e{epochs}"
                )
                fields = {
                    "pool": pool,
                    "similarity": sim if pool in SIMILARITY_POOLS else None,
                    "epochs": epochs,
                    "options": spec.options,
                    "seed": ctx.seed,
                }
                key = ctx.cache.key("healed", fields, (unlearned.key, original.key, req.key))

                def compute(
                    pool: str = pool, sim: str = sim, epochs: int = epochs, variant: str = variant
                ) -> tuple[nn.Module, float, dict[str, Any], Callable[[Path], None]]:
                    t0 = time.perf_counter()
                    res = heal(
                        unlearned.model,
                        ctx.dataset,
                        ctx.split,
                        req.cumulative,
                        pool=pool,  # type: ignore[arg-type]
                        similarity=sim if pool in SIMILARITY_POOLS else None,
                        epochs=epochs,
                        config=config,
                        original=original.model,
                        seed=ctx.seed,
                        device=ctx.device,
                    )
                    stats = dict(getattr(res, "stats", None) or {})
                    wall = time.perf_counter() - t0
                    seconds = stats.get("seconds", wall)
                    seconds = float(seconds) if isinstance(seconds, int | float) else wall
                    save = _saver(
                        ctx, res.model, kind="healed", request=req.cumulative,
                        parent=unlearned.path, extra={"variant": variant, "stats": stats},
                    )  # fmt: skip
                    return res.model, seconds, stats, save

                art = _model_artifact(
                    ctx, "healed", key, compute, f"req {req.index} · heal {method.key} {variant}"
                )
                info = {"pool": pool, "similarity": fields["similarity"], "epochs": epochs}
                out.append((variant, art, info))
    return out


# ---------------------------------------------------------------------------- audit → rows


def _audit_hash(ctx: RunContext, *keys: str) -> str:
    return hash_parts(
        canonical_json(ctx.scenario.audit.model_dump(mode="json")), str(ctx.seed), *keys
    )[:32]


def _audit(ctx: RunContext, model: nn.Module, gold: Artifact, original: Artifact,
           req: StepRequest, timings: dict[str, float]) -> Any:  # fmt: skip
    from obliviate.audit import audit

    a = ctx.scenario.audit
    return audit(
        model,
        gold.model,
        original.model,
        dataset=ctx.dataset,
        split=ctx.split,
        request=req.cumulative,
        taus=a.taus,
        perturbation=a.perturbation,
        c=a.c,
        metrics=a.metrics,
        seed=ctx.seed,
        device=ctx.device,
        n_max_mia=a.n_max_mia,
        residual_max_samples=a.residual_max_samples,
        contamination_k=a.contamination_k,
        attack_kw=a.attack_kw or None,
        timings=timings,
    )


def _metrics(report: Any, col: str) -> dict[str, Any]:
    m = dict(report.values[col])
    pc = report.details.get("per_class/test", {})
    if isinstance(pc, dict) and col in pc:
        m["per_class/test"] = pc[col]
    return m


def _row(ctx: RunContext, step: str, req: StepRequest, method: str, variant: str,
         config_hash: str, metrics: dict[str, Any], seconds: float, speedup: float | None,
         info: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    return {
        "scenario": ctx.scenario.name,
        "step": step,
        "step_index": req.index,
        "method": method,
        "variant": variant,
        "seed": ctx.seed,
        "config_hash": config_hash,
        "metrics": metrics,
        "timings": {"seconds": float(seconds), "speedup": speedup},
        "info": _plain({"class_names": list(ctx.dataset.class_names), **info}),
        "versions": ctx.versions,
        "created": time.time(),
    }


def _key_of(ctx: RunContext, step: str, req: StepRequest, method: str, variant: str) -> dict:
    return {
        "scenario": ctx.scenario.name,
        "step": step,
        "step_index": req.index,
        "method": method,
        "variant": variant,
        "seed": ctx.seed,
    }


def _put(ctx: RunContext, row: dict[str, Any]) -> None:
    ctx.store.put_row(row)
    ctx.counts["written"] += 1
    ctx.emit("row", step=row["step"], method=row["method"], variant=row["variant"],
             step_index=row["step_index"])  # fmt: skip


def _req_info(req: StepRequest) -> dict[str, Any]:
    return {
        "request": {**req.info, "hash": req.request.hash},
        "request_size": len(req.request),
        "cumulative_size": len(req.cumulative),
    }


def reference_rows(ctx: RunContext, original: Artifact, gold: Artifact, req: StepRequest) -> None:
    """Rows "original" and "gold" of step ``i`` (one audit of the original vs gold_i)."""
    h = _audit_hash(ctx, "reference", original.key, gold.key, req.key)
    keys = [_key_of(ctx, s, req, s, "") for s in ("original", "gold")]
    if all(ctx.store.has_row(k, h) for k in keys):
        ctx.counts["skipped"] += 2
        return
    rep = _audit(ctx, original.model, gold, original, req, {"gold": gold.seconds})
    base = _req_info(req)
    _put(ctx, _row(ctx, "original", req, "original", "", h, _metrics(rep, "unlearned"),
                   original.seconds, None, {**base, "model_version": "v0"}))  # fmt: skip
    _put(ctx, _row(ctx, "gold", req, "gold", "", h, _metrics(rep, "gold"), gold.seconds, None,
                   {**base, "model_version": f"gold{req.index + 1}"}))  # fmt: skip


def _parent_version(ctx: RunContext, req: StepRequest) -> str:
    """The version step ``req`` unlearned from: v_i in a sequence, v0 for independent requests."""
    return "v0" if ctx.scenario.independent_requests else f"v{req.index}"


def _speedup(gold_s: float, s: float) -> float | None:
    return gold_s / s if s > 0 else None


def method_rows(ctx: RunContext, method: MethodSpec, art: Artifact, gold: Artifact,
                original: Artifact, req: StepRequest) -> None:  # fmt: skip
    """Row "unlearn" and the ledger entry of ``method``'s version ``v_{i+1}``."""
    h = _audit_hash(ctx, "unlearn", art.key, gold.key, original.key)
    key = _key_of(ctx, "unlearn", req, method.key, "")
    if ctx.store.has_row(key, h):
        ctx.counts["skipped"] += 1
    else:
        rep = _audit(ctx, art.model, gold, original, req,
                     {"unlearn": art.seconds, "gold": gold.seconds})  # fmt: skip
        info = {
            **_req_info(req),
            "unlearner": method.name,
            "params": method.config,
            "model_version": f"v{req.index + 1}",
            "parent_version": _parent_version(ctx, req),
            "stats": art.stats,
        }
        _put(ctx, _row(ctx, "unlearn", req, method.key, "", h, _metrics(rep, "unlearned"),
                       art.seconds, _speedup(gold.seconds, art.seconds), info))  # fmt: skip
    row = ctx.store.get_row(key)
    assert row is not None  # written above or found by has_row
    ctx.store.put_ledger(
        {
            "scenario": ctx.scenario.name,
            "seed": ctx.seed,
            "step_index": req.index,
            "request_hash": req.request.hash,
            "request_size": len(req.request),
            "request_source": req.source,
            "method": method.key,
            "model_version": f"v{req.index + 1}",
            "parent_version": _parent_version(ctx, req),
            "metrics_summary": {k: row["metrics"].get(k) for k in LEDGER_METRICS},
        }
    )


def defense_rows(ctx: RunContext, method: MethodSpec, art: Artifact, gold: Artifact,
                 original: Artifact, req: StepRequest) -> None:  # fmt: skip
    """Rows "heal" (one per defense variant) for ``method``'s version ``v_{i+1}``."""
    scn = ctx.scenario
    if method.key not in {m.key for m in scn.healed_methods()}:
        return
    for name in DEFENSES.names():
        spec = getattr(scn.defenses, name, None)
        if spec is None:
            continue
        for variant, healed, info in DEFENSES.get(name)(ctx, spec, method, art, original, req):
            h = _audit_hash(ctx, "heal", healed.key, gold.key, original.key)
            key = _key_of(ctx, "heal", req, method.key, variant)
            if ctx.store.has_row(key, h):
                ctx.counts["skipped"] += 1
                continue
            total = art.seconds + healed.seconds
            rep = _audit(ctx, healed.model, gold, original, req,
                         {"unlearn": total, "gold": gold.seconds})  # fmt: skip
            row_info = {
                **_req_info(req),
                **info,
                "defense": name,
                "unlearner": method.name,
                "model_version": f"v{req.index + 1}+{name}",
                "heal_seconds": healed.seconds,
                "unlearn_seconds": art.seconds,
                "stats": healed.stats,
            }
            _put(ctx, _row(ctx, "heal", req, method.key, variant, h, _metrics(rep, "unlearned"),
                           healed.seconds, _speedup(gold.seconds, total), row_info))  # fmt: skip


# ---------------------------------------------------------------------------- the run


def run_seed(ctx: RunContext) -> None:
    """Run the whole data flow for one seed (see the module docstring)."""
    from obliviate.unlearn import UNLEARNERS

    scn = ctx.scenario
    original = train_original(ctx)
    chains: dict[str, Artifact] = {}
    for m in scn.methods:
        if "needs_ensemble" in UNLEARNERS.get(m.name).tags:
            chains[m.key] = train_ensemble(ctx, m)
        else:
            chains[m.key] = original
    starts = dict(chains)  # independent requests are each unlearned from here
    golds: dict[int, Artifact] = {}
    for req in select_requests(ctx, original, golds):
        gold = train_gold(ctx, original, req)
        golds[req.index] = gold
        reference_rows(ctx, original, gold, req)
        for m in matched_forgetting(ctx, gold, req):
            art = unlearn_step(ctx, m, (starts if scn.independent_requests else chains)[m.key], req)
            chains[m.key] = art
            method_rows(ctx, m, art, gold, original, req)
            defense_rows(ctx, m, art, gold, original, req)


def matched_forgetting(ctx: RunContext, gold: Artifact, req: StepRequest) -> list[MethodSpec]:
    """The scenario's methods for step ``req``, with the matched-forgetting stopping rule set.

    With ``matched_forgetting`` (ROKA, arXiv 2603.00436: methods compared at equal forgetting),
    each method it covers gets ``stop_forget_acc`` = gold's accuracy on the step's request
    (percent, true labels) + ``margin_pp``; the target enters the method's cache key, so a new
    gold recomputes it. Other methods are returned unchanged.
    """
    scn = ctx.scenario
    covered = {m.key for m in scn.matched_methods()}
    if not covered:
        return list(scn.methods)
    from obliviate.inference import batched_logits

    x, y = ctx.dataset.tensors(req.request.ids)
    pred = batched_logits(gold.model, x, device=ctx.device).argmax(1)
    gold_acc = 100.0 * float((pred == y).double().mean())
    assert scn.matched_forgetting is not None  # covered is empty otherwise
    target = min(100.0, round(gold_acc + scn.matched_forgetting.margin_pp, 6))
    ctx.log(
        f"req {req.index} · matched forgetting: gold forget acc {gold_acc:.2f} %, "
        f"stop at <= {target:.2f} %"
    )
    return [
        m.model_copy(update={"config": {**m.config, "stop_forget_acc": target}})
        if m.key in covered
        else m
        for m in scn.methods
    ]


def run_scenario(
    scenario: Scenario | str | Path,
    *,
    results: ResultsStore | str | Path = "obliviate-results.db",
    cache: ArtifactCache | str | Path = ".obliviate-cache",
    seeds: list[int] | None = None,
    device: str | None = None,
    size: str | None = None,
    show_progress: bool = True,
    console: Console | None = None,
    on_event: EventFn | None = None,
) -> RunResult:
    """Run a scenario (object or YAML path) for each seed; rows land in ``results``.

    Resumable: artifacts come from ``cache`` when their keys match, and rows already stored with
    the same config hash are skipped, so re-running after a kill finishes the work without
    duplicated or missing rows. ``seeds``/``device`` override the scenario's; ``size`` picks a
    ``sizes`` overlay when a path is given. ``on_event(kind, info)`` is called after each new
    artifact (``"artifact"``) and each stored row (``"row"``).
    """
    from obliviate.utils import resolve_device

    scn = scenario if isinstance(scenario, Scenario) else load_scenario(scenario, size=size)
    if seeds is not None:
        if not seeds or len(set(seeds)) != len(seeds):
            raise ConfigError(f"seeds must be distinct and non-empty, got {seeds}")
        scn = scn.model_copy(update={"seeds": list(seeds)})
    if device is not None:
        scn = scn.model_copy(update={"device": device})
    dev = str(resolve_device(scn.device))
    store = results if isinstance(results, ResultsStore) else ResultsStore(results)
    art_cache = cache if isinstance(cache, ArtifactCache) else ArtifactCache(cache)
    config_hash = scn.config_hash()
    store.put_scenario(scn.name, config_hash, scn.model_dump(mode="json"))
    t0 = time.perf_counter()
    written = skipped = 0
    for seed in scn.seeds:
        ds, split = load_data(scn, seed)
        ctx = RunContext(
            scenario=scn,
            seed=seed,
            cache=art_cache,
            store=store,
            device=dev,
            dataset=ds,
            split=split,
            config_hash=config_hash,
            versions={
                "obliviate": obliviate.__version__,
                "torch": torch.__version__,
                "dataset": ds.fingerprint(),
            },
            show_progress=show_progress,
            console=console,
            on_event=on_event,
        )
        run_seed(ctx)
        written += ctx.counts["written"]
        skipped += ctx.counts["skipped"]
    return RunResult(
        scn.name,
        list(scn.seeds),
        written,
        skipped,
        art_cache.counts(),
        time.perf_counter() - t0,
        store.path,
    )


__all__ = [
    "DEFENSES",
    "REQUEST_SOURCES",
    "SIMILARITY_POOLS",
    "Artifact",
    "RunContext",
    "RunResult",
    "StepRequest",
    "derive_seed",
    "load_data",
    "run_scenario",
    "run_seed",
    "select_requests",
    "train_gold",
    "train_original",
    "unlearn_step",
]
