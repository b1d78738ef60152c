"""Defenses benchmark (issue 6): one function per section; ``--sections healing,rurk,roka``.

Healing section (Jasiorski, Klonowski & Woźniak 2025; ``research/papers.md`` §3.3):

* MNIST and Fashion-MNIST, small_cnn; the reserve is held out of training as in the paper's
  code (40 000 train, 20 000 reserve, the official 10 000 test images).
* Requests: random 5 % and 30 % of the training set, and the adversarial strategies of
  ``obliviate.attacks.requests.select_request`` (default ``lowest_logit``, the healing code's
  "worst logits", at a 5 % budget) when that module is importable.
* Unlearning with the healing paper's recipes: ``fisher`` as Model-Healing's simplified Golatkar
  noise (``recipe=paper``, scale 35e-4 ⇒ λσ_h² = 1.5e-10, ε = 1e-6) and ``influence`` as its
  per-deletion-batch LiSSA recipe (``recipe=healing, solver=lissa``, the row ``bench/methods.py``
  lists in ``EXTRA_ROWS``).
* Healing for 1 epoch (the paper's HEAL_LR recipe, :class:`HealConfig` defaults) with twins
  (each similarity), random spares and remaining-only. The general spare set is a seeded random
  draw of |request| reserve elements (one spare per unlearned element on average), so it differs
  from the twins, which search the whole reserve; a class whose spares run out heals those
  elements without one (``fallback="remaining_only"``, counted in the table).
* Target: healed test accuracy within 0.5 pp of the gold retrain, or above it.

Originals, gold retrains and unlearned models are cached under ``--cache``.

    python bench/defenses.py --sections healing            # full size
    python bench/defenses.py --sections healing --quick    # CI size: MNIST subset, twins with
                                                           # pixel_l2/feature_cosine only
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from obliviate.checkpoint import load_checkpoint, save_checkpoint
from obliviate.data import ForgetRequest, ImageDataset, Split, load_dataset, make_split
from obliviate.defenses.healing import HealConfig, SparePool, heal
from obliviate.defenses.similarity import SIMILARITIES, TwinIndex, uses_features
from obliviate.train import TrainConfig, evaluate
from obliviate.unlearn import create_unlearner, make_task

sys.path.insert(0, str(Path(__file__).resolve().parent))
from methods import cached_train  # noqa: E402  (bench/methods.py: train or load a cached model)

console = Console(width=170)
TARGET_PP = 0.5

#: The healing paper's unlearning recipes (research/papers.md §3.3, step 5).
HEALING_RECIPES: dict[str, dict[str, Any]] = {
    "fisher": {"recipe": "paper", "lambda_sigma2": 1.5e-10, "fisher_eps": 1e-6},
    "influence": {"recipe": "healing", "solver": "lissa"},
}


def _split(ds: ImageDataset, quick: bool) -> Split:
    if quick:
        return make_split(ds, seed=0, reserve=1000, train=2000, test_per_class=100)
    return make_split(ds, seed=0, reserve=20_000, train=40_000)


def _requests(
    kinds: list[str], original, ds: ImageDataset, split: Split, seed: int, device: str = "cpu"
) -> dict[str, ForgetRequest]:
    """Named requests: ``random5`` / ``random30`` and adversarial strategies (5 % budget)."""
    out: dict[str, ForgetRequest] = {}
    g = torch.Generator().manual_seed(seed)
    for kind in kinds:
        if kind.startswith("random"):
            frac = int(kind.removeprefix("random")) / 100
            k = int(round(frac * len(split.train)))
            pick = torch.randperm(len(split.train), generator=g)[:k]
            out[kind] = ForgetRequest(torch.sort(split.train[pick]).values, name=kind)
            continue
        try:
            from obliviate.attacks.requests import select_request
        except ImportError as e:
            console.print(
                f"[yellow]skipping adversarial request {kind!r}: obliviate.attacks.requests "
                f"is not importable ({e})[/]"
            )
            continue
        sel = select_request(kind, original, ds, split, budget=0.05, seed=seed, device=device)
        out[kind] = sel.request
    return out


def _cached_unlearn(path: Path, method: str, model, ds, split, req, seed: int, device: str = "cpu"):
    """Unlearn with the healing recipe of ``method`` (or load it from ``path``) on ``device``."""
    if (path / "meta.json").exists():
        ck = load_checkpoint(path, expect_split_hash=split.hash, device=device)
        return ck.model, float(ck.meta["unlearn"]["stats"]["seconds"])
    u = create_unlearner(method, **HEALING_RECIPES[method])
    res = u.unlearn(model, make_task(ds, split, req, seed=seed, device=device))
    save_checkpoint(
        path,
        res.model,
        split=split,
        dataset=ds,
        request=req,
        kind="unlearned",
        extra={"unlearn": {"method": method, "params": u.get_params(), "stats": res.stats}},
    )
    return res.model, float(res.stats["seconds"])


def _acc(model, ds, split, device: str = "cpu") -> float:
    return evaluate(model, ds, split, ("test",), per_class=False, device=device)["acc/test"]


def section_healing(a: argparse.Namespace) -> None:
    """Healing after fisher / influence: twins (each similarity) vs spares vs remaining only."""
    quick, dev = a.quick, a.device
    datasets = a.datasets or (["mnist"] if quick else ["mnist", "fashion_mnist"])
    kinds = a.requests or ["random5", "random30", "lowest_logit"]
    sims = a.similarities or (["pixel_l2", "feature_cosine"] if quick else list(SIMILARITIES))
    spare_sims = a.spare_similarities or (["feature_cosine"] if quick else list(SIMILARITIES))
    recipe = TrainConfig(epochs=3, lr=0.05, batch_size=128)
    summary: list[tuple[str, str, str, str, float, float]] = []
    for name in datasets:
        ds = load_dataset(name)
        split = _split(ds, quick)
        tag = f"{name}-{'quick' if quick else 'full'}"
        root = a.cache / tag
        t0 = time.perf_counter()
        original, _ = cached_train(root / "original", ds, split, recipe, device=dev)
        acc_orig = _acc(original, ds, split, dev)
        console.print(
            f"[bold]{name}[/]: split {split.sizes()}, original test {acc_orig:.2f} % "
            f"({time.perf_counter() - t0:.0f} s)"
        )
        indexes = {
            s: TwinIndex.build(
                ds, split, similarity=s, model=original if uses_features(s) else None, device=dev
            )
            for s in sims
        }
        for kind, req in _requests(kinds, original, ds, split, a.seed, dev).items():
            gold, _ = cached_train(
                root / f"gold-{kind}", ds, split, recipe, exclude=req, device=dev
            )
            acc_gold = _acc(gold, ds, split, dev)
            t = Table(
                title=f"{name}, request {kind} ({len(req)} ids): original {acc_orig:.2f} %, "
                f"gold {acc_gold:.2f} % — heal 1 epoch, target ≥ gold − {TARGET_PP} pp"
            )
            for col in (
                "method",
                "unlearned",
                "heal pool",
                "similarity",
                "healed test %",
                "Δ gold (pp)",
                "target",
                "no repl.",
                "match s",
                "heal s",
            ):
                t.add_column(col, justify="right")
            for method in a.methods:
                unl, _ = _cached_unlearn(
                    root / f"{method}-{kind}", method, original, ds, split, req, a.seed, dev
                )
                acc_unl = _acc(unl, ds, split, dev)
                configs: list[tuple[str, str | None]] = [("twins", s) for s in sims]
                configs += [("spares", s) for s in spare_sims] + [("none", None)]
                for pool, sim in configs:
                    kw: dict[str, Any] = {}
                    if pool == "twins":
                        kw["index"] = indexes[sim]
                    if pool == "spares":
                        kw["spare_pool"] = SparePool.from_split(
                            ds, split, size=min(len(req), len(split.reserve)), seed=a.seed
                        )
                    res = heal(
                        unl,
                        ds,
                        split,
                        req,
                        pool=pool,  # type: ignore[arg-type]
                        similarity=sim,
                        config=HealConfig(epochs=1, fallback="remaining_only"),
                        original=original,
                        seed=a.seed,
                        device=dev,
                        **kw,
                    )
                    acc = _acc(res.model, ds, split, dev)
                    gap = acc - acc_gold
                    ok = gap >= -TARGET_PP
                    summary.append((name, kind, method, f"{pool}/{sim or '-'}", acc, gap))
                    t.add_row(
                        method,
                        f"{acc_unl:.2f}",
                        pool,
                        sim or "—",
                        f"{acc:.2f}",
                        f"{gap:+.2f}",
                        "[green]yes[/]" if ok else "[red]no[/]",
                        str(res.stats["n_without_replacement"]) if pool != "none" else "—",
                        f"{res.stats['match_seconds']:.2f}",
                        f"{res.stats['fit_seconds']:.1f}",
                    )
            console.print(t)
    if summary:
        hit = sum(g >= -TARGET_PP for *_, g in summary)
        console.print(
            f"healing target (≥ gold − {TARGET_PP} pp after 1 epoch) met in {hit}/{len(summary)} "
            f"configurations; worst gap {min(g for *_, g in summary):+.2f} pp"
        )


def _seeds(a: argparse.Namespace) -> list[int]:
    return [int(s) for s in a.report_seeds] if a.report_seeds else ([1] if a.quick else [1, 2, 3])


def section_rurk(a: argparse.Namespace) -> None:
    """RURK vs the original in the methods benchmark's settings (``bench/_rurk_section.py``):
    Avg. Gap and r_τ per τ; hyper-parameters tuned on seed 0, reported on other seeds."""
    from _rurk_section import print_rows, run_rurk_section

    rows = run_rurk_section(a.quick, _seeds(a), settings=tuple(a.rurk_settings), device=a.device)
    print_rows(rows)  # with the target lines


def section_roka(a: argparse.Namespace) -> None:
    """ROKA vs grad_ascent / neggrad_plus at matched forgetting under the indirect attack
    (``bench/_roka_section.py``): victim-class accuracy relative to gold."""
    from _roka_section import print_rows, run_roka_section

    for name in a.datasets or ["mnist"]:
        print_rows(run_roka_section(a.quick, _seeds(a), dataset=name))


SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {
    "healing": section_healing,
    "rurk": section_rurk,
    "roka": section_roka,
}
PLANNED = tuple(SECTIONS)


def _csv(v: str) -> list[str]:
    return [s.strip() for s in v.split(",") if s.strip()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sections", type=_csv, default=["healing"], help="healing,rurk,roka")
    p.add_argument("--quick", action="store_true", help="CI size")
    p.add_argument("--datasets", type=_csv, default=None, help="mnist,fashion_mnist")
    p.add_argument(
        "--requests", type=_csv, default=None, help="random5,random30 and adversarial strategies"
    )
    p.add_argument("--methods", type=_csv, default=list(HEALING_RECIPES))
    p.add_argument("--similarities", type=_csv, default=None, help="twin similarities")
    p.add_argument("--spare-similarities", type=_csv, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--report-seeds", type=_csv, default=None, help="rurk/roka report seeds (default 1,2,3)"
    )
    p.add_argument(
        "--rurk-settings", type=_csv, default=["small", "class_half", "random"], help="rurk only"
    )
    p.add_argument("--cache", type=Path, default=Path(".obliviate/bench/defenses"))
    p.add_argument(
        "--device", default="cpu", help="cpu, cuda or cuda:N (healing and rurk sections)"
    )
    a = p.parse_args()
    unknown = sorted(set(a.sections) - set(PLANNED))
    if unknown:
        p.error(f"unknown section(s) {unknown}; known: {list(PLANNED)}")
    missing = sorted(set(a.sections) - set(SECTIONS))
    if missing:
        p.error(f"section(s) {missing} are not implemented yet; available: {sorted(SECTIONS)}")
    bad = sorted(set(a.methods) - set(HEALING_RECIPES))
    if bad:
        p.error(f"no healing-paper recipe for method(s) {bad}; known: {sorted(HEALING_RECIPES)}")
    t0 = time.perf_counter()
    for s in a.sections:
        SECTIONS[s](a)
    console.print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
