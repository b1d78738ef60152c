"""``obliviate heal``: the healing step of the healing paper (arXiv 2507.10886) as a CLI verb.

Wire it in with ``register(app)`` (``obliviate.cli`` does so); the work is done by
:func:`obliviate.steps.heal_step` (twin index and spare-pool lifecycle, then
:func:`obliviate.defenses.healing.heal`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from obliviate.cli_common import (
    DEVICE_HELP,
    _device_option,
    _fail,
    _out_dir,
    _seed_option,
    console,
)
from obliviate.config import build_config, parse_set_options
from obliviate.defenses.healing import HealConfig
from obliviate.defenses.similarity import check_similarity
from obliviate.errors import ConfigError, ObliviateError
from obliviate.steps import POOLS, heal_step


def heal_cmd(
    unlearned: Annotated[Path, typer.Option(help="Checkpoint of the unlearned model.")],
    request: Annotated[Path, typer.Option(help='Forget request JSON: {"ids": [...]}.')],
    out: Annotated[
        Path, typer.Option(help="Checkpoint folder for the healed model.", callback=_out_dir)
    ],
    pool: Annotated[
        str, typer.Option(help="twins (reserve twins), spares (general spare set) or none.")
    ] = "twins",
    similarity: Annotated[
        str,
        typer.Option(help="pixel_l2, pixel_mahalanobis, feature_cosine or feature_mahalanobis."),
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
    seed: Annotated[
        int, typer.Option(help="Seed of the fine-tuning and the spare draw.", callback=_seed_option)
    ] = 0,
    device: Annotated[str, typer.Option(help=DEVICE_HELP, callback=_device_option)] = "cpu",
) -> None:
    """Heal an unlearned model: fine-tune on remaining ∪ twins/spares (or remaining only)."""
    try:
        check_similarity(similarity)
        if pool not in POOLS:
            raise ConfigError(f"--pool must be twins, spares or none, got {pool!r}")
        for flag, value, used_by in (
            ("--original", original, "twins"),
            ("--index", index, "twins"),
            ("--spare-pool", spare_pool, "spares"),
        ):
            if value is not None and pool != used_by:
                raise ConfigError(f"{flag} applies only to --pool {used_by}, not --pool {pool}")
        overrides: dict[str, Any] = {
            "epochs": epochs,
            "features_from": features_from,
            "fallback": fallback,
            "spare_pool_size": spare_size,
        }
        overrides.update(parse_set_options(set_))
        res = heal_step(
            unlearned,
            request,
            pool=pool,  # type: ignore[arg-type]
            similarity=similarity,
            config=build_config(HealConfig, overrides),
            original=original,
            index=index,
            spare_pool=spare_pool,
            seed=seed,
            device=device,
            out=out,
        )
    except ObliviateError as e:
        _fail(e)
    t = Table(title=f"healing ({pool}, {similarity}, {res.config.epochs} epoch(s))")
    for col in ("model", "test acc (%)", "forget acc (%)", "retain acc (%)"):
        t.add_column(col, justify="right")
    for name, m in (("unlearned", res.before), ("healed", res.after)):
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


def register(app: typer.Typer) -> None:
    """Add the ``heal`` command to ``app``."""
    app.command("heal")(heal_cmd)
