"""Defenses of a scenario run, a pluggable registry (:data:`DEFENSES`): each turns one method's
unlearned version into named variants (cached artifacts) that the runner audits as "heal" rows.

Built in: healing (Jasiorski, Klonowski & Woźniak 2025, arXiv 2507.10886) through
:func:`obliviate.steps.heal_step`, the step ``obliviate heal`` runs too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from obliviate import steps
from obliviate.config import build_config
from obliviate.defenses.healing import HealConfig
from obliviate.registry import Registry
from obliviate.scenarios.context import Artifact, RunContext, StepRequest
from obliviate.scenarios.context import model_artifact as _model_artifact
from obliviate.scenarios.context import saver as _saver
from obliviate.scenarios.schema import HealingSpec, MethodSpec

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
                    res = steps.heal_step(
                        unlearned.model,
                        req.cumulative,
                        pool=pool,  # type: ignore[arg-type]
                        similarity=sim if pool in SIMILARITY_POOLS else None,
                        epochs=epochs,
                        config=config,
                        original=original.model,
                        dataset=ctx.dataset,
                        split=ctx.split,
                        seed=ctx.seed,
                        device=ctx.device,
                    )
                    stats = dict(res.stats or {})
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


__all__ = ["DEFENSES", "SIMILARITY_POOLS", "Defense", "healing_variants"]
