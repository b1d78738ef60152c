"""The scenario runner: DESIGN.md's data flow, every artifact cached, every row stored.

For each seed::

    load data, split ─► train original (cache)
    for each request i of the sequence:
        select request i (ids / file / attack strategy / indirect attack; cache) from the training
          ids not requested before
        gold_i = retrain on train \\ (requests 0..i) (cache)
        audit(original vs gold_i) ─► rows "original", "gold"
        for each method m: v_{i+1}(m) = unlearn request i from v_i(m) (cache; v_0 = the original,
          or the artifact of the format the method needs, e.g. SISA's ensemble)
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
* A method that diverges (non-finite loss or weights) gets a failed row in place of its unlearn
  row, is dropped from the rest of the sequence (failed rows "skipped: …" there), and the run
  goes on with the other methods and seeds (:mod:`obliviate.scenarios.rows`; a rerun keeps the
  failed row, since the same config and seed diverge the same way).
* Cost: an unlearn row's speed-up is gold seconds / unlearn seconds; a heal row's is gold seconds /
  (unlearn + heal seconds), the cost of the whole repair path.

Artifacts are keyed by :meth:`ArtifactCache.key` over exactly the fields that produce them plus
their parents' keys, so a second run reuses everything and a changed field recomputes only its
dependants. Rows carry a ``config_hash`` over the keys of the models audited and the audit
options; a restarted run skips rows already stored with the same hash (kill-and-resume).
Request sources and defenses are pluggable registries (:data:`REQUEST_SOURCES`,
:data:`DEFENSES`). Training, unlearning, healing and auditing are the steps of
:mod:`obliviate.steps` that the CLI calls too; the runner adds the caching and the rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

import obliviate
from obliviate import steps
from obliviate.audit import LEDGER_KEYS
from obliviate.data import ForgetRequest, ImageDataset, Split, load_dataset, make_split
from obliviate.errors import ConfigError, DivergenceError
from obliviate.inference import batched_logits
from obliviate.scenarios.cache import ArtifactCache
from obliviate.scenarios.context import (
    Artifact,
    EventFn,
    RunContext,
    StepRequest,
    derive_seed,
)
from obliviate.scenarios.context import model_artifact as _model_artifact
from obliviate.scenarios.context import plain as _plain
from obliviate.scenarios.context import saver as _saver
from obliviate.scenarios.defenses import DEFENSES, SIMILARITY_POOLS, healing_variants
from obliviate.scenarios.requests import REQUEST_SOURCES, select_requests
from obliviate.scenarios.rows import Failure, failed_row, skipped_row, stored_failure
from obliviate.scenarios.rows import audit as _audit
from obliviate.scenarios.rows import audit_hash as _audit_hash
from obliviate.scenarios.rows import make_row as _row
from obliviate.scenarios.rows import metrics_of as _metrics
from obliviate.scenarios.rows import put_row as _put
from obliviate.scenarios.rows import req_info as _req_info
from obliviate.scenarios.rows import row_key as _key_of
from obliviate.scenarios.schema import (
    EnsembleSpec,
    MethodSpec,
    Scenario,
    load_scenario,
)
from obliviate.scenarios.store import ResultsStore
from obliviate.scenarios.tuning import (
    TunedParams,
    apply_tuned,
    check_tuning_seed,
    methods_to_tune,
    tune_methods,
)
from obliviate.unlearn import UNLEARNERS, create_unlearner
from obliviate.utils import resolve_device

#: Metrics copied into each ledger entry.
LEDGER_METRICS = LEDGER_KEYS


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
    #: failed rows written (methods that diverged, and their skipped later requests' rows)
    rows_failed: int = 0


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


def _scenario_train(
    ctx: RunContext,
    exclude: ForgetRequest | None = None,
    artifact_format: str = "checkpoint",
    options: dict[str, Any] | None = None,
    seed: int | None = None,
) -> steps.TrainedArtifact:
    """The scenario model, trained with its recipe and the run's seed on the training split minus
    ``exclude``, as an artifact of ``artifact_format`` (:func:`obliviate.steps.train_step`)."""
    scn = ctx.scenario
    return steps.train_step(
        ctx.dataset,
        ctx.split,
        scn.model.name,
        scn.train_config(ctx.seed),
        artifact_format=artifact_format,
        options=options,
        model_kwargs=scn.model.kwargs,
        exclude=exclude,
        seed=seed,
        device=ctx.device,
        show_progress=ctx.show_progress,
    )


def train_original(ctx: RunContext) -> Artifact:
    """Step "train": the original model on the whole training split (cached)."""
    key = ctx.cache.key("original", _recipe(ctx))

    def compute() -> tuple[nn.Module, float, dict[str, Any], Callable[[Path], None]]:
        tr = _scenario_train(ctx)
        save = _saver(
            ctx, tr.model, kind="trained", request=None, parent=None, extra={"key": key},
            history=tr.history, metrics=tr.metrics,
        )  # fmt: skip
        return tr.model, tr.seconds, tr.stats, save

    return _model_artifact(ctx, "original", key, compute, "train original")


def train_gold(ctx: RunContext, original: Artifact, req: StepRequest) -> Artifact:
    """Step "gold": the original's exact recipe on train \\ (requests 0..i) (cached)."""
    key = ctx.cache.key("gold", {"cumulative": req.cumulative.hash}, (original.key,))

    def compute() -> tuple[nn.Module, float, dict[str, Any], Callable[[Path], None]]:
        tr = _scenario_train(ctx, exclude=req.cumulative)
        save = _saver(
            ctx, tr.model, kind="gold", request=req.cumulative, parent=original.path,
            extra={"key": key, "step_index": req.index}, history=tr.history, metrics=tr.metrics,
        )  # fmt: skip
        return tr.model, tr.seconds, {"metrics": tr.metrics}, save

    return _model_artifact(ctx, "gold", key, compute, f"req {req.index} · gold retrain")


def start_artifact(ctx: RunContext, method: MethodSpec, original: Artifact) -> Artifact:
    """Version ``v_0`` of ``method``'s chain: the original, unless the method needs another
    artifact format (:func:`obliviate.steps.format_for_unlearner`; SISA: an ensemble with the
    method's ``ensemble`` options, defaults 5 × 5, vote), then that artifact trained with the
    original's recipe (cached)."""
    fmt = steps.format_for_unlearner(UNLEARNERS.get(method.name).tags)
    if fmt.unlearner_tag is None:
        return original
    options = (method.ensemble or EnsembleSpec()).model_dump()
    key = ctx.cache.key("ensemble", {**_recipe(ctx), "ensemble": options})

    def compute() -> tuple[nn.Module, float, dict[str, Any], Callable[[Path], None]]:
        tr = _scenario_train(ctx, artifact_format=fmt.name, options=options, seed=ctx.seed)
        save = _saver(ctx, tr.model, kind="ensemble", request=None, parent=None, extra={})
        return tr.model, tr.seconds, tr.stats, save

    return _model_artifact(ctx, "ensemble", key, compute, f"{method.key}: {fmt.label} training")


# ---------------------------------------------------------------------------- unlearn


def unlearned_key(ctx: RunContext, method: MethodSpec, parent: Artifact, req: StepRequest) -> str:
    """The cache key of ``method``'s version ``v_{i+1}`` unlearned from ``parent``."""
    u = create_unlearner(method.name, **method.config)
    fields = {"method": method.name, "params": _plain(u.get_params()), "seed": ctx.seed}
    return ctx.cache.key("unlearned", fields, (parent.key, req.key))


def unlearn_step(
    ctx: RunContext, method: MethodSpec, parent: Artifact, req: StepRequest
) -> Artifact:
    """Step "unlearn": model version ``v_{i+1}`` of ``method`` from ``v_i`` (cached). A method
    that diverges raises :class:`DivergenceError` (nothing is cached)."""
    u = create_unlearner(method.name, **method.config)
    key = unlearned_key(ctx, method, parent, req)

    def compute() -> tuple[nn.Module, float, dict[str, Any], Callable[[Path], None]]:
        res = steps.unlearn_step(
            u,
            parent.model,
            req.request,
            seed=ctx.seed,
            device=ctx.device,
            dataset=ctx.dataset,
            split=req.split,
            train_config=ctx.scenario.train_config(ctx.seed).to_dict(),
        )
        extra = {"method": method.name, "params": u.get_params(), "stats": res.stats}
        save = _saver(
            ctx, res.model, kind="unlearned", request=req.cumulative, parent=parent.path,
            extra=extra,
        )  # fmt: skip
        return res.model, float(res.stats["seconds"]), res.stats, save

    return _model_artifact(
        ctx, "unlearned", key, compute, f"req {req.index} · unlearn {method.key} (v{req.index + 1})"
    )


def try_unlearn(ctx: RunContext, method: MethodSpec, parent: Artifact, req: StepRequest,
                failed: dict[str, Failure]) -> Artifact | None:  # fmt: skip
    """:func:`unlearn_step`, or None with a failed row (:mod:`obliviate.scenarios.rows`) when
    ``method`` diverges now, diverged here in an earlier run, or diverged at an earlier request
    of the sequence (``failed``, updated)."""
    if method.key in failed:
        skipped_row(ctx, method, req, failed[method.key])
        return None
    key = unlearned_key(ctx, method, parent, req)
    found = stored_failure(ctx, method, req, key)
    if found is None:
        t0 = time.perf_counter()
        try:
            return unlearn_step(ctx, method, parent, req)
        except DivergenceError as e:
            found = failed_row(ctx, method, req, key, e, time.perf_counter() - t0)
    if not ctx.scenario.independent_requests:  # the sequence of versions ends here
        failed[method.key] = found
    return None


# ---------------------------------------------------------------------------- audit → rows


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
    tuned = ctx.tuned.get(method.key)
    h = _audit_hash(
        ctx, "unlearn", art.key, gold.key, original.key, *([tuned.key] if tuned else [])
    )
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
            **({"tuned": tuned.info()} if tuned else {}),
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
    """Run the whole data flow for one seed (see the module docstring). A method that diverges
    gets failed rows and the run goes on (:mod:`obliviate.scenarios.rows`)."""
    scn = ctx.scenario
    original = train_original(ctx)
    chains: dict[str, Artifact] = {}
    for m in scn.methods:
        chains[m.key] = start_artifact(ctx, m, original)
    starts = dict(chains)  # independent requests are each unlearned from here
    golds: dict[int, Artifact] = {}
    failed: dict[str, Failure] = {}  # methods dropped from the sequence (they diverged)
    for req in select_requests(ctx, original, golds):
        gold = train_gold(ctx, original, req)
        golds[req.index] = gold
        reference_rows(ctx, original, gold, req)
        for m in matched_forgetting(ctx, gold, req):
            parent = (starts if scn.independent_requests else chains)[m.key]
            art = try_unlearn(ctx, m, parent, req, failed)
            if art is None:  # diverged: a failed row, no ledger entry, nothing to heal
                continue
            chains[m.key] = art
            method_rows(ctx, m, art, gold, original, req)
            defense_rows(ctx, m, art, gold, original, req)


def tune_step(ctx: RunContext) -> dict[str, TunedParams]:
    """The ``tune`` step on the tuning seed ``ctx.seed``: its original, request 0 and gold (cached
    like any seed's), then :func:`obliviate.scenarios.tuning.tune_methods` (no rows written)."""
    original = train_original(ctx)
    req = next(select_requests(ctx, original, {}))
    gold = train_gold(ctx, original, req)
    keys = {m.key for m in methods_to_tune(ctx.scenario)}
    methods = [m for m in matched_forgetting(ctx, gold, req) if m.key in keys]
    starts = {m.key: start_artifact(ctx, m, original) for m in methods}
    return tune_methods(ctx, methods, starts, gold, req)


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
    scn = scenario if isinstance(scenario, Scenario) else load_scenario(scenario, size=size)
    if seeds is not None:
        if not seeds or len(set(seeds)) != len(seeds):
            raise ConfigError(f"seeds must be distinct and non-empty, got {seeds}")
        scn = scn.model_copy(update={"seeds": list(seeds)})
    if device is not None:
        scn = scn.model_copy(update={"device": device})
    dev = str(resolve_device(scn.device))
    check_tuning_seed(scn)
    art_cache = cache if isinstance(cache, ArtifactCache) else ArtifactCache(cache)
    if isinstance(results, ResultsStore):
        return _run(scn, results, art_cache, dev, show_progress, console, on_event)
    created = not Path(results).exists()  # the store is opened only once the inputs validated
    store = ResultsStore(results)
    try:
        return _run(scn, store, art_cache, dev, show_progress, console, on_event)
    except BaseException:
        if created and not store.rows():
            store.close()  # a failed run leaves no empty store behind
            for f in (Path(results), Path(f"{results}-wal"), Path(f"{results}-shm")):
                f.unlink(missing_ok=True)
        raise


def _run(
    scn: Scenario,
    store: ResultsStore,
    art_cache: ArtifactCache,
    dev: str,
    show_progress: bool,
    console: Console | None,
    on_event: EventFn | None,
) -> RunResult:
    """The body of :func:`run_scenario` once the scenario, device and store are ready."""
    config_hash = scn.config_hash()
    store.put_scenario(scn.name, config_hash, scn.model_dump(mode="json"))
    t0 = time.perf_counter()
    written = skipped = failed = 0

    def context(seed: int, tuned: dict[str, TunedParams]) -> RunContext:
        ds, split = load_data(scn, seed)
        return RunContext(
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
            tuned=tuned,
        )

    tuned: dict[str, TunedParams] = {}
    if scn.tune is not None:  # on the tuning seed, before (and apart from) the report seeds
        tuned = tune_step(context(scn.tune.seed, {}))
        scn = apply_tuned(scn, tuned)
    for seed in scn.seeds:
        ctx = context(seed, tuned)
        run_seed(ctx)
        written += ctx.counts["written"]
        skipped += ctx.counts["skipped"]
        failed += ctx.counts.get("failed", 0)
    return RunResult(
        scn.name,
        list(scn.seeds),
        written,
        skipped,
        art_cache.counts(),
        time.perf_counter() - t0,
        store.path,
        failed,
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
    "healing_variants",
    "load_data",
    "run_scenario",
    "run_seed",
    "select_requests",
    "start_artifact",
    "train_gold",
    "train_original",
    "try_unlearn",
    "unlearn_step",
    "unlearned_key",
]
