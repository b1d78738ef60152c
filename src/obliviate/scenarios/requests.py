"""Request selection of a scenario run: request ``i`` of the sequence, drawn from the training ids
not requested before, cached as JSON. Request forms are a pluggable registry
(:data:`REQUEST_SOURCES`): explicit ids, a file, an attack strategy (adversarial selection) or
ROKA's indirect attack (arXiv 2603.00436).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from obliviate._io import atomic_write_json, sha256_file
from obliviate.attacks.indirect import select_indirect
from obliviate.attacks.requests import select_request
from obliviate.data import ForgetRequest, ImageDataset, Split
from obliviate.errors import ConfigError, RequestError
from obliviate.registry import Registry
from obliviate.scenarios.context import Artifact, RunContext, StepRequest, derive_seed
from obliviate.scenarios.context import plain as _plain
from obliviate.scenarios.specs import (
    FileRequest,
    IdsRequest,
    IndirectRequest,
    StrategyRequest,
    _request_kind,
)


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


def _class_index(ds: ImageDataset, c: int | str, key: str = "class") -> int:
    """The index of class ``c`` (a name or an index); :class:`ConfigError` naming ``key``."""
    if isinstance(c, str) and c in ds.class_names:
        return ds.class_names.index(c)
    try:
        ci = int(c)
    except ValueError:
        raise ConfigError(
            f"{key}: dataset {ds.name!r} has no class {c!r}; classes: {ds.class_names}"
        ) from None
    if not 0 <= ci < ds.num_classes:
        raise ConfigError(
            f"{key}: class index {ci} out of range [0, {ds.num_classes}) for {ds.name!r}"
        )
    return ci


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
    classes = (
        None
        if spec.classes is None
        else [_class_index(ctx.dataset, c, "classes") for c in spec.classes]
    )
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
    ind = spec.indirect
    victim = _class_index(ctx.dataset, ind.victim_class, "indirect.victim_class")
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


__all__ = ["REQUEST_SOURCES", "RequestSource", "select_requests"]
