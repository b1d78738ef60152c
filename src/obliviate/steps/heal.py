"""Step "heal" (Jasiorski, Klonowski & Woźniak 2025, arXiv 2507.10886) with the lifecycle of its
pools: the twin index is loaded (and verified) when its folder exists, else built for the whole
training set and saved; the general spare set is loaded when its file exists (used spares are
never handed out again), else drawn from the reserve and saved. The fine-tuning itself is
:func:`obliviate.defenses.healing.heal`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from torch import nn

from obliviate.checkpoint import load_checkpoint
from obliviate.data import ForgetRequest, ImageDataset, Split
from obliviate.defenses.healing import HealConfig, HealResult, SparePool, heal
from obliviate.defenses.similarity import (
    TwinIndex,
    check_similarity,
    model_state_hash,
    uses_features,
)
from obliviate.errors import ConfigError
from obliviate.steps.artifacts import (
    ArtifactLike,
    RequestLike,
    as_artifact,
    load_request,
    save_artifact,
)
from obliviate.train import evaluate
from obliviate.unlearn.artifact import ModelArtifact

Pool = Literal["twins", "spares", "none"]
POOLS: tuple[str, ...] = ("twins", "spares", "none")


@dataclass
class HealOutcome:
    """The healing result (healed model, replacements, stats), the recipe it used and, when
    saved, test/forget/retain accuracy before and after."""

    result: HealResult
    config: HealConfig
    request: ForgetRequest
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    index: TwinIndex | None = None
    spare_pool: SparePool | None = None

    @property
    def model(self) -> nn.Module:
        return self.result.model

    @property
    def stats(self) -> dict[str, Any]:
        return self.result.stats


def open_twin_index(
    path: str | os.PathLike[str],
    dataset: ImageDataset,
    split: Split,
    *,
    similarity: str,
    feature_model: nn.Module | None,
    config: HealConfig,
    device: str = "cpu",
) -> TwinIndex:
    """The twin index at ``path``: loaded and verified (this split, this similarity, for feature
    similarities the weights of ``feature_model``) if the folder exists, else built over the
    whole training set and saved there."""
    p = Path(path)
    feats = uses_features(similarity)
    if p.exists():
        return TwinIndex.load(
            p,
            expect_checkpoint_hash=model_state_hash(feature_model) if feats else None,
            expect_split_hash=split.hash,
            expect_similarity=similarity,
        )
    idx = TwinIndex.build(
        dataset,
        split,
        similarity=similarity,
        model=feature_model if feats else None,
        k=config.k,
        shrinkage=config.shrinkage_value(),
        device=device,
    )
    idx.save(p)
    return idx


def open_spare_pool(
    path: str | os.PathLike[str],
    dataset: ImageDataset,
    split: Split,
    *,
    config: HealConfig,
    seed: int = 0,
) -> SparePool:
    """The general spare set at ``path`` (it records used spares) if the file exists, else
    ``config.spare_pool_size`` reserve elements (0: all) drawn with ``seed`` and saved there."""
    p = Path(path)
    if p.exists():
        return SparePool.load(p, split=split, dataset=dataset)
    return SparePool.from_split(
        dataset, split, size=config.spare_pool_size or None, seed=seed, path=p
    )


def _original_model(
    original: ArtifactLike | None, unlearned: ModelArtifact, device: str
) -> nn.Module | None:
    """The original's model: given, or loaded from the path given or the unlearned artifact's
    recorded parent (on the unlearned artifact's split); None if neither names one."""
    if isinstance(original, ModelArtifact):
        return original.model
    if isinstance(original, nn.Module):
        return original
    parent = unlearned.meta.get("parent")
    path = original or (Path(parent) if parent else None)
    if path is None:
        return None
    return load_checkpoint(path, device=device, expect_split_hash=unlearned.split.hash).model


def heal_step(
    unlearned: ArtifactLike,
    request: RequestLike,
    *,
    pool: Pool = "twins",
    similarity: str | None = None,
    epochs: int | None = None,
    config: HealConfig | None = None,
    original: ArtifactLike | None = None,
    index: str | os.PathLike[str] | None = None,
    spare_pool: str | os.PathLike[str] | None = None,
    dataset: ImageDataset | None = None,
    split: Split | None = None,
    seed: int = 0,
    device: str = "cpu",
    out: str | os.PathLike[str] | None = None,
) -> HealOutcome:
    """Heal ``unlearned`` for ``request``: fine-tune a copy on remaining ∪ twins / spares (or
    the remaining data only, ``pool="none"``), see :func:`~obliviate.defenses.healing.heal`.

    ``original`` (the model whose features feature similarities compare) defaults to the
    unlearned artifact's recorded parent; it is loaded only when needed. ``index`` and
    ``spare_pool`` are paths managed by :func:`open_twin_index` / :func:`open_spare_pool`.
    Guarantees: the input model is not modified; same inputs and seed, same healed weights;
    with ``out`` the healed artifact is saved (kind ``healed``, pool, similarity, recipe, seed,
    stats, replacements, index and pool paths recorded) with accuracy before and after.
    """
    if pool not in POOLS:
        raise ConfigError(f"heal: pool must be 'twins', 'spares' or 'none', got {pool!r}")
    if spare_pool is not None and pool != "spares":
        raise ConfigError("--spare-pool only applies to --pool spares")
    if similarity is not None:
        check_similarity(similarity)
    cfg = config or HealConfig()
    if epochs is not None:
        cfg = dataclasses.replace(cfg, epochs=epochs)
    art = as_artifact(unlearned, device, dataset=dataset, split=split)
    ds, sp = art.dataset, art.split
    req = load_request(request, sp)
    sim = similarity or "feature_cosine"
    orig_model = None
    if isinstance(original, ModelArtifact | nn.Module) or (
        pool != "none" and uses_features(sim) and cfg.features_from == "original"
    ):
        orig_model = _original_model(original, art, device)
        if orig_model is None:
            raise ConfigError(
                f"--similarity {sim} compares the original model's features: pass --original "
                "(the unlearned checkpoint records no parent)"
            )
    feat_model = orig_model if cfg.features_from == "original" else art.model
    idx = None
    if pool == "twins" and index is not None:
        idx = open_twin_index(
            index, ds, sp, similarity=sim, feature_model=feat_model, config=cfg, device=device
        )
    pool_obj = None
    if pool == "spares" and spare_pool is not None:
        pool_obj = open_spare_pool(spare_pool, ds, sp, config=cfg, seed=seed)
    if out is not None:
        before = evaluate(art.model, ds, sp, ("test",), request=req, device=device)
    res = heal(
        art.model,
        ds,
        sp,
        req,
        pool=pool,
        similarity=similarity,
        config=cfg,
        index=idx,
        spare_pool=pool_obj,
        original=orig_model,
        seed=seed,
        device=device,
    )
    outcome = HealOutcome(res, cfg, req, index=idx, spare_pool=pool_obj)
    if out is not None:
        outcome.before = before
        outcome.after = evaluate(res.model, ds, sp, ("test",), request=req, device=device)
        outcome.path = save_artifact(
            res.model,
            Path(out),
            split=sp,
            dataset=ds,
            train_config=art.meta.get("train_config"),
            metrics=outcome.after,
            request=req,
            parent=str(art.path),
            kind="healed",
            extra={
                "heal": {
                    "pool": pool,
                    "similarity": sim if pool != "none" else None,
                    "params": dataclasses.asdict(cfg),
                    "seed": seed,
                    "stats": res.stats,
                    "replacements": {str(k): v for k, v in res.twins.items()},
                    "index": None if index is None else str(index),
                    "spare_pool": None if spare_pool is None else str(spare_pool),
                }
            },
        )
    return outcome


__all__ = ["POOLS", "HealOutcome", "heal_step", "open_spare_pool", "open_twin_index"]
