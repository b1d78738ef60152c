"""What every step of a scenario run shares: its context, its artifacts and their cache.

An artifact is computed once per content key (:meth:`ArtifactCache.key`) and then reloaded:
:func:`model_artifact` writes the model folder first (atomically, in the model's own format via
:func:`obliviate.steps.save_artifact`), then a ``<key>.json`` sidecar (atomically); the sidecar
marks the artifact complete, so a run killed in between recomputes it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn

from obliviate._io import atomic_write_json
from obliviate.data import ForgetRequest, ImageDataset, Split
from obliviate.scenarios.cache import ArtifactCache
from obliviate.scenarios.schema import Scenario, canonical_json
from obliviate.scenarios.store import ResultsStore
from obliviate.steps import format_of_model, load_artifact, save_artifact

EventFn = Callable[[str, dict[str, Any]], None]
#: ``compute() -> (model, seconds, stats, save(path))`` of an artifact not in the cache.
Compute = Callable[[], tuple[nn.Module, float, dict[str, Any], Callable[[Path], None]]]


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
    #: the ``tune`` step's choices: method key -> :class:`obliviate.scenarios.tuning.TunedParams`
    tuned: dict[str, Any] = field(default_factory=dict)

    def emit(self, event: str, **payload: Any) -> None:
        if self.on_event is not None:
            self.on_event(event, payload)

    def log(self, msg: str) -> None:
        if self.console is not None:
            self.console.print(f"[dim]seed {self.seed}[/] {msg}")


def derive_seed(seed: int, *parts: str | int) -> int:
    """A 31-bit seed derived from ``seed`` and labels (stable across processes and machines)."""
    h = hashlib.sha256(canonical_json([seed, *parts]).encode()).hexdigest()
    return int(h[:8], 16) & 0x7FFFFFFF


def plain(o: Any) -> Any:
    """JSON-safe copy of method / defense stats: tensors and arrays become lists (short) or a
    shape string, non-finite floats the string ``"nan"``/``"inf"``, other objects ``str(o)``."""
    if isinstance(o, dict):
        return {str(k): plain(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [plain(v) for v in o]
    if isinstance(o, torch.Tensor | np.ndarray | np.generic):
        t = torch.as_tensor(np.asarray(o))
        return plain(t.tolist()) if t.numel() <= 64 else f"tensor{tuple(t.shape)}"
    if isinstance(o, float):
        return o if math.isfinite(o) else str(o)
    if o is None or isinstance(o, bool | int | str):
        return o
    return str(o)


def model_artifact(
    ctx: RunContext,
    kind: str,
    key: str,
    compute: Compute,
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
        # a cached artifact is the run's own output: a diverged (non-finite) model reloads as it
        # was computed, so a resumed run records the same row instead of stopping
        model = load_artifact(
            path, ctx.device, dataset=ctx.dataset, split=ctx.split, allow_nonfinite=True
        ).model
        ctx.log(f"{what}: cached ({rec['seconds']:.1f} s when computed)")
        return Artifact(key, path, model, float(rec["seconds"]), True, rec.get("stats", {}))
    model, seconds, stats, save = compute()
    save(path)
    fmt = format_of_model(model).name
    atomic_write_json(
        ctx.cache.path(kind, key, ".json"),
        {"format": fmt, "kind": kind, "seconds": seconds, "stats": plain(stats)},
    )
    ctx.log(f"{what}: {seconds:.1f} s")
    ctx.emit("artifact", kind=kind, key=key)
    return Artifact(key, path, model, seconds, False, plain(stats))


def saver(
    ctx: RunContext,
    model: nn.Module,
    *,
    kind: str,
    request: ForgetRequest | None,
    parent: Path | None,
    extra: dict[str, Any],
    history: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> Callable[[Path], None]:
    """``save(path)`` writing ``model`` in its own format with the run's provenance (training
    ``history`` and ``metrics`` when given; ``extra`` under ``scenario_step``)."""

    def save(path: Path) -> None:
        save_artifact(
            model,
            path,
            split=ctx.split,
            dataset=ctx.dataset,
            train_config=ctx.scenario.train_config(ctx.seed).to_dict(),
            history=history,
            metrics=metrics,
            request=request,
            parent=None if parent is None else str(parent),
            kind=kind,
            extra={"scenario_step": plain(extra)},
        )

    return save


__all__ = [
    "Artifact",
    "Compute",
    "EventFn",
    "RunContext",
    "StepRequest",
    "derive_seed",
    "model_artifact",
    "plain",
    "saver",
]
