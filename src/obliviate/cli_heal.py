"""``obliviate heal``: the healing step of the healing paper as a CLI verb.

Wire it in with ``register(app)`` (``obliviate.cli`` does so); the work is done by
:func:`obliviate.defenses.healing.heal`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def register(app: typer.Typer) -> None:
    """Add the ``heal`` command to ``app``."""

    @app.command("heal")
    def heal_cmd(
        unlearned: Annotated[Path, typer.Option(help="Checkpoint of the unlearned model.")],
        request: Annotated[Path, typer.Option(help='Forget request JSON: {"ids": [...]}.')],
        out: Annotated[Path, typer.Option(help="Checkpoint folder for the healed model.")],
        pool: Annotated[
            str, typer.Option(help="twins (reserve twins), spares (general spare set) or none.")
        ] = "twins",
        similarity: Annotated[
            str,
            typer.Option(
                help="pixel_l2, pixel_mahalanobis, feature_cosine or feature_mahalanobis."
            ),
        ] = "feature_cosine",
        epochs: Annotated[int, typer.Option(help="Fine-tuning epochs.")] = 1,
        original: Annotated[
            Path | None,
            typer.Option(
                help="Checkpoint whose penultimate features feature similarities compare "
                "(default: the unlearned checkpoint's recorded parent)."
            ),
        ] = None,
        index: Annotated[
            Path | None,
            typer.Option(
                help="Twin index folder: loaded (and verified) if it exists, else built for the "
                "whole training set and saved there."
            ),
        ] = None,
        spare_pool: Annotated[
            Path | None,
            typer.Option(
                help="Spare-pool JSON: loaded if it exists (used spares are never reused), else "
                "drawn from the reserve and saved there."
            ),
        ] = None,
        spare_size: Annotated[
            int, typer.Option(help="Size of a new spare pool (0: the whole reserve).")
        ] = 0,
        features_from: Annotated[
            str, typer.Option(help="original (default) or current: whose features to compare.")
        ] = "original",
        fallback: Annotated[
            str, typer.Option(help="error, or remaining_only when no replacement is left.")
        ] = "error",
        set_: Annotated[
            list[str] | None,
            typer.Option("--set", help="Any HealConfig field as key=value (repeatable)."),
        ] = None,
        seed: Annotated[int, typer.Option(help="Seed of the fine-tuning and the spare draw.")] = 0,
        device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    ) -> None:
        """Heal an unlearned model: fine-tune on remaining ∪ twins/spares (or remaining only)."""
        import dataclasses

        from rich.table import Table

        from obliviate.checkpoint import dataset_for, load_checkpoint, save_checkpoint
        from obliviate.cli import _fail, console
        from obliviate.config import build_config, parse_set_options
        from obliviate.data import ForgetRequest
        from obliviate.defenses.healing import HealConfig, SparePool, heal
        from obliviate.defenses.similarity import (
            TwinIndex,
            check_similarity,
            model_state_hash,
            uses_features,
        )
        from obliviate.errors import ConfigError, ObliviateError
        from obliviate.train import evaluate

        try:
            check_similarity(similarity)
            if pool not in ("twins", "spares", "none"):
                raise ConfigError(f"--pool must be twins, spares or none, got {pool!r}")
            overrides: dict[str, Any] = {
                "epochs": epochs,
                "features_from": features_from,
                "fallback": fallback,
                "spare_pool_size": spare_size,
            }
            overrides.update(parse_set_options(set_))
            cfg = build_config(HealConfig, overrides)
            ck = load_checkpoint(unlearned, device=device)
            ds = dataset_for(ck)
            split = ck.split
            req = ForgetRequest.load(request).validate(split)
            orig_model = None
            needs_orig = (
                pool != "none" and uses_features(similarity) and cfg.features_from == "original"
            )
            if needs_orig:
                orig_path = original or (Path(ck.meta["parent"]) if ck.meta.get("parent") else None)
                if orig_path is None:
                    raise ConfigError(
                        f"--similarity {similarity} compares the original model's features: pass "
                        "--original (the unlearned checkpoint records no parent)"
                    )
                orig_model = load_checkpoint(
                    orig_path, device=device, expect_split_hash=split.hash
                ).model
            feat_model = orig_model if cfg.features_from == "original" else ck.model
            idx = None
            if pool == "twins" and index is not None:
                fh = model_state_hash(feat_model) if uses_features(similarity) else None
                if index.exists():
                    idx = TwinIndex.load(
                        index,
                        expect_checkpoint_hash=fh,
                        expect_split_hash=split.hash,
                        expect_similarity=similarity,
                    )
                else:
                    idx = TwinIndex.build(
                        ds,
                        split,
                        similarity=similarity,
                        model=feat_model if uses_features(similarity) else None,
                        k=cfg.k,
                        shrinkage=cfg.shrinkage_value(),
                        device=device,
                    )
                    idx.save(index)
            sp = None
            if pool == "spares" and spare_pool is not None:
                if spare_pool.exists():
                    sp = SparePool.load(spare_pool, split=split, dataset=ds)
                else:
                    sp = SparePool.from_split(
                        ds, split, size=cfg.spare_pool_size or None, seed=seed, path=spare_pool
                    )
            elif pool != "spares" and spare_pool is not None:
                raise ConfigError("--spare-pool only applies to --pool spares")
            before = evaluate(ck.model, ds, split, ("test",), request=req, device=device)
            res = heal(
                ck.model,
                ds,
                split,
                req,
                pool=pool,  # type: ignore[arg-type]
                similarity=similarity,
                config=cfg,
                index=idx,
                spare_pool=sp,
                original=orig_model,
                seed=seed,
                device=device,
            )
            after = evaluate(res.model, ds, split, ("test",), request=req, device=device)
            save_checkpoint(
                out,
                res.model,
                split=split,
                dataset=ds,
                train_config=ck.meta.get("train_config"),
                metrics=after,
                request=req,
                parent=str(unlearned),
                kind="healed",
                extra={
                    "heal": {
                        "pool": pool,
                        "similarity": similarity if pool != "none" else None,
                        "params": dataclasses.asdict(cfg),
                        "seed": seed,
                        "stats": res.stats,
                        "replacements": {str(k): v for k, v in res.twins.items()},
                        "index": None if index is None else str(index),
                        "spare_pool": None if spare_pool is None else str(spare_pool),
                    }
                },
            )
        except ObliviateError as e:
            _fail(e)
        t = Table(title=f"healing ({pool}, {similarity}, {cfg.epochs} epoch(s))")
        for col in ("model", "test acc (%)", "forget acc (%)", "retain acc (%)"):
            t.add_column(col, justify="right")
        for name, m in (("unlearned", before), ("healed", after)):
            t.add_row(
                name,
                *(f"{m[k]:.2f}" for k in ("acc/test", "acc/forget", "acc/retain")),
            )
        console.print(t)
        console.print(
            f"{res.stats['n_replacements']} replacement(s), "
            f"{res.stats['n_without_replacement']} without; {res.stats['seconds']:.1f} s"
        )
        console.print(f"healed checkpoint written to [bold]{out}[/]")
