"""Attacks on unlearning (issue 5): adversarial deletion requests and ROKA's indirect attack.

Part 1 — adversarial requests (healing paper, arXiv 2507.10886). On MNIST and Fashion-MNIST with
small_cnn, for each request strategy and each unlearning method: the test-accuracy drop (pp,
original − unlearned) after unlearning a request of 1 % of the training set; mean and 95 %
t-interval over seeds, and the paired difference to ``random`` with its interval. Target: under
at least two approximate methods the best strategy beats ``random`` by ≥ 2 pp with the
difference's interval excluding 0, while under ``retrain`` every strategy stays within 0.5 pp of
``random`` (the damage comes from approximate unlearning, not from the data removed).

Part 2 — the indirect attack (ROKA, arXiv 2603.00436) on Fashion-MNIST: victims shirt, coat,
pullover; the drop on the victim class after forgetting its nearest class vs the farthest class
vs a random request of the same size, under grad_ascent, neggrad_plus, salun and retrain.

Each seed re-draws the split and the original's training seed; originals are cached under
``--cache`` (a killed run resumes). Method hyper-parameters are the library defaults with the
fine-tuning family capped at ``STEP_CAP`` optimiser steps (as bench/methods.py does in its large
settings) and ``fisher``/``influence`` in the healing paper's recipes (``HEALING_RECIPES``);
``adaptive`` targets the method it is evaluated against, through its fast proxy; it runs one
proxy search per (method, seed), which on 2 cores costs more than the 60-minute budget of the full
table, so it is opt-in (``--strategies random,...,adaptive``).

    python bench/attacks.py                 # full size (≈ 60 min on 2 cores)
    python bench/attacks.py --quick         # CI size (< 3 min)
    python bench/attacks.py --datasets fashion_mnist --strategies random,influence --seeds 1,2
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from methods import cached_train  # noqa: E402  (bench/methods.py: cached original models)
from obliviate._io import atomic_write_json, read_json  # noqa: E402
from obliviate.attacks import REQUEST_STRATEGIES, indirect_attack_report, select_request  # noqa: E402
from obliviate.data import load_dataset, make_split  # noqa: E402
from obliviate.train import TrainConfig  # noqa: E402
from obliviate.unlearn import UNLEARNERS, GradientUnlearner, create_unlearner, make_task  # noqa: E402

console = Console(width=170)
METHODS = ["retrain", "finetune", "grad_ascent", "fisher", "influence", "salun"]
INDIRECT_METHODS = ["grad_ascent", "neggrad_plus", "salun", "retrain"]
VICTIMS = ["Shirt", "Coat", "Pullover"]
#: Optimiser-step cap of the fine-tuning family (bench/methods.py's larger cap).
STEP_CAP = 80
SIZES = {"full": {"train": 10_000, "val": 1000}, "quick": {"train": 3000, "val": 500}}
RECIPE = TrainConfig(epochs=3, lr=0.05, batch_size=128)


#: ``fisher`` and ``influence`` run the healing paper's recipes — the setting in which that paper
#: shows adversarial requests degrading the model (research/papers.md §3.3; bench/defenses.py).
#: ``fisher`` is code base 1's ``iterative_fisher_unlearn`` (θ ← θ − F⁻¹∇L_remaining + noise):
#: the noise-only recipe of the healing notebooks does not depend on the request at all (session
#: 2 measured 3.6–3.9 pp for every strategy), the Newton step on the remaining loss does.
HEALING_RECIPES: dict[str, dict[str, Any]] = {
    "fisher": {"recipe": "paper", "lambda_sigma2": 1.5e-10, "fisher_eps": 1e-6, "newton": True},
    "influence": {"recipe": "healing", "solver": "lissa"},
}
#: The owner's calibration of gradient ascent: 5 passes over the request in 32-image batches at
#: lr 1e-3, chosen on seed 9 (never a reported seed) as the setting in which a *random* 1 %
#: request costs about 1.4 pp of test accuracy (lr 3e-3 cost 17.7 pp, 1e-2 collapsed the model).
#: With the library default (2 steps of a 128-batch) the model does not move at all.
CALIBRATED: dict[str, dict[str, Any]] = {
    "grad_ascent": {"lr": 1e-3, "epochs": 5, "batch_size": 32},
}


def method_options(name: str) -> dict[str, Any]:
    """Library defaults (the healing paper's recipes for ``fisher``/``influence``); the
    fine-tuning family gets one pass (two over the forget set) and at most ``STEP_CAP`` steps,
    gradient ascent its calibrated setting (``CALIBRATED``)."""
    if name in HEALING_RECIPES:
        return dict(HEALING_RECIPES[name])
    cls = UNLEARNERS.get(name)
    if issubclass(cls, GradientUnlearner):
        base = {"epochs": 1 if cls.driver == "retain" else 2, "max_steps": STEP_CAP}
        return {**base, **CALIBRATED.get(name, {})}
    return {}


def interval(vals: list[float]) -> tuple[float, float]:
    """Mean and half-width of the 95 % t-interval over the finite values (a diverged run is
    NaN; NaN half-width for a single value, NaN mean for none)."""
    vals = [v for v in vals if math.isfinite(v)]
    if not vals:
        return math.nan, math.nan
    m = statistics.mean(vals)
    if len(vals) < 2:
        return m, math.nan
    return m, stats.t.ppf(0.975, len(vals) - 1) * statistics.stdev(vals) / math.sqrt(len(vals))


def fmt(vals: list[float]) -> str:
    m, h = interval(vals)
    n = sum(math.isfinite(v) for v in vals)
    miss = "" if n == len(vals) else f" (n={n})"
    return (f"{m:+.2f}" if math.isnan(h) else f"{m:+.2f} ± {h:.2f}") + miss


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    from obliviate.inference import batched_logits

    return 100.0 * float((batched_logits(model, x).argmax(1) == y).double().mean())


def setup(name: str, seed: int, size: str, cache: Path):
    ds = load_dataset(name)
    split = make_split(ds, seed=seed, **SIZES[size])
    cfg = TrainConfig(**{**RECIPE.to_dict(), "seed": seed})
    model, _ = cached_train(cache / f"{name}-{size}-seed{seed}" / "original", ds, split, cfg)
    return ds, split, cfg, model


def run_requests(
    name: str, strategies: list[str], methods: list[str], seeds: list[int], size: str, cache: Path
) -> dict[str, Any]:
    """drops[method][strategy] = per-seed test-accuracy drops (pp)."""
    drops: dict[str, dict[str, list[float]]] = {m: {s: [] for s in strategies} for m in methods}
    for seed in seeds:
        t0 = time.perf_counter()
        done = cache / f"{name}-{size}-seed{seed}" / "drops.json"  # per-cell results: resumable
        stored = read_json(done, "attack drops", RuntimeError) if done.exists() else {}
        todo = [(m, s) for m in methods for s in strategies if f"{m}/{s}" not in stored]
        if todo:
            ds, split, cfg, model = setup(name, seed, size, cache)
            xt, yt = ds.tensors(split.test)
            before = accuracy(model, xt, yt)
            fixed = {
                s: select_request(s, model, ds, split, budget=0.01, seed=seed)
                for s in {s for _, s in todo}
                if s != "adaptive"
            }
            for m, s in todo:
                opts = method_options(m)
                sel = fixed.get(s) or select_request(
                    "adaptive",
                    model,
                    ds,
                    split,
                    budget=0.01,
                    seed=seed,
                    method=m,
                    method_options=opts,
                    train_config=cfg.to_dict(),
                )
                task = make_task(ds, split, sel.request, seed=seed, train_config=cfg.to_dict())
                try:
                    res = create_unlearner(m, **opts).unlearn(model, task)
                    stored[f"{m}/{s}"] = before - accuracy(res.model, xt, yt)
                except FloatingPointError as e:
                    console.print(f"  [{name}] {m} diverged on {s}: {e}")
                    stored[f"{m}/{s}"] = math.nan
                atomic_write_json(done, stored)
        for m in methods:
            for s in strategies:
                drops[m][s].append(stored[f"{m}/{s}"])
        console.print(
            f"  [{name}] seed {seed}: {len(todo)} cells computed, "
            f"{len(methods) * len(strategies) - len(todo)} reused from {done}, "
            f"{time.perf_counter() - t0:.0f} s; drops (pp): "
            + "; ".join(
                f"{m}: " + " ".join(f"{s}={drops[m][s][-1]:+.2f}" for s in strategies)
                for m in methods
            )
        )
    return drops


def print_requests(name: str, drops: dict[str, dict[str, list[float]]], seeds: list[int]) -> dict:
    strategies = list(next(iter(drops.values())))
    t = Table(
        title=f"{name}, small_cnn: test-accuracy drop (pp) after unlearning a 1 % request — "
        f"mean ± 95 % interval over seeds {seeds}; [Δ vs random]"
    )
    t.add_column("method")
    for s in strategies:
        t.add_column(s, justify="right")
    verdict: dict[str, Any] = {"approx_wins": [], "retrain_ok": None}
    for m, row in drops.items():
        cells = []
        best: tuple[float, float, str] | None = None
        for s in strategies:
            cell = fmt(row[s])
            if s != "random" and "random" in row:
                diff = [a - b for a, b in zip(row[s], row["random"], strict=True)]
                md, hd = interval(diff)
                cell += f" [{md:+.2f}" + ("" if math.isnan(hd) else f" ± {hd:.2f}") + "]"
                if m != "retrain" and (best is None or md > best[0]):
                    best = (md, hd, s)
                if m == "retrain":
                    ok = abs(md) <= 0.5
                    verdict["retrain_ok"] = ok and verdict["retrain_ok"] is not False
            cells.append(cell)
        t.add_row(m, *cells)
        if best is not None and best[0] >= 2.0 and not math.isnan(best[1]) and best[0] > best[1]:
            verdict["approx_wins"].append(f"{m} ({best[2]}: {best[0]:+.2f} ± {best[1]:.2f})")
    console.print(t)
    ok = len(verdict["approx_wins"]) >= 2 and verdict["retrain_ok"] is not False
    console.print(
        f"target on {name}: ≥ 2 approximate methods where the best strategy beats random by "
        f"≥ 2 pp (interval excluding 0): {len(verdict['approx_wins'])} — "
        f"{', '.join(verdict['approx_wins']) or 'none'}; retrain within 0.5 pp of random: "
        f"{'n/a (retrain not run)' if verdict['retrain_ok'] is None else verdict['retrain_ok']}"
        f" → {'MET' if ok and verdict['retrain_ok'] else 'NOT MET'}"
    )
    verdict["met"] = bool(ok and verdict["retrain_ok"])
    return verdict


def run_indirect(
    victims: list[str], methods: list[str], seeds: list[int], size: str, cache: Path
) -> dict[str, Any]:
    """out[victim][method][request] = per-seed victim-class drops (pp)."""
    out: dict[str, dict[str, dict[str, list[float]]]] = {}
    nearest: dict[str, list[str]] = {}
    for seed in seeds:
        done = cache / f"fashion_mnist-{size}-seed{seed}" / "indirect.json"  # resumable
        stored = read_json(done, "indirect-attack drops", RuntimeError) if done.exists() else {}
        loaded = None  # the seed's original, loaded once and only if a victim is missing
        for v in victims:
            key = f"{v}|{','.join(methods)}"
            if key not in stored:
                loaded = loaded or setup("fashion_mnist", seed, size, cache)
                ds, split, cfg, model = loaded
                rep = indirect_attack_report(
                    model,
                    ds,
                    split,
                    v,
                    methods,
                    train_config=cfg.to_dict(),
                    seed=seed,
                    method_options={m: method_options(m) for m in methods},
                )
                stored[key] = {
                    "classes": f"{ds.class_names[rep.selection.forget_class]} / far "
                    f"{ds.class_names[rep.details['farthest_class']]}",
                    "rows": [[r.method, r.request, r.drop] for r in rep.rows],
                }
                atomic_write_json(done, stored)
            nearest.setdefault(v, []).append(stored[key]["classes"])
            for m, req, drop in stored[key]["rows"]:
                out.setdefault(v, {}).setdefault(m, {}).setdefault(req, []).append(drop)
        console.print(f"  [indirect] seed {seed} done")
    t = Table(
        title="Fashion-MNIST indirect attack: victim-class test-accuracy drop (pp), mean ± 95 % "
        f"interval over seeds {seeds}"
    )
    for col in ("victim", "nearest / farthest class", "method", "nearest", "farthest", "random"):
        t.add_column(col, justify="right")
    for v, per_m in out.items():
        for m, per_r in per_m.items():
            t.add_row(
                v,
                ", ".join(sorted(set(nearest[v]))),
                m,
                *(fmt(per_r[k]) for k in ("nearest", "farthest", "random")),
            )
    console.print(t)
    return {"drops": out, "classes": nearest}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI size (3k images, 2×2, 1 seed).")
    p.add_argument("--datasets", default="mnist,fashion_mnist")
    p.add_argument("--strategies", default=None, help="Comma-separated (default: all).")
    p.add_argument("--methods", default=None, help=f"Default: {','.join(METHODS)}.")
    p.add_argument("--seeds", default=None, help="Default 1,2,3 (quick: 1).")
    p.add_argument(
        "--indirect-methods", default=None, help=f"Default: {','.join(INDIRECT_METHODS)}."
    )
    p.add_argument("--victims", default=None, help=f"Default: {','.join(VICTIMS)}.")
    p.add_argument("--no-indirect", action="store_true", help="Skip part 2.")
    p.add_argument("--cache", type=Path, default=Path(".obliviate/bench/attacks"))
    p.add_argument("--out", type=Path, default=None, help="Write all numbers as JSON here.")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads.")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    q = a.quick
    default = [n for n in REQUEST_STRATEGIES.names() if n != "adaptive"]
    strategies = a.strategies or ("random,lowest_logit" if q else ",".join(default))
    strategies = strategies.split(",")
    if "random" not in strategies:
        strategies.insert(0, "random")  # the baseline every difference is taken against
    methods = (a.methods or ("finetune,grad_ascent" if q else ",".join(METHODS))).split(",")
    ind_methods = (
        a.indirect_methods or ("grad_ascent" if q else ",".join(INDIRECT_METHODS))
    ).split(",")
    victims = (a.victims or ("Shirt" if q else ",".join(VICTIMS))).split(",")
    for s in strategies:
        REQUEST_STRATEGIES.get(s)
    for m in methods + ind_methods:
        UNLEARNERS.get(m)
    seeds = [int(s) for s in (a.seeds or ("1" if q else "1,2,3")).split(",")]
    size = "quick" if q else "full"
    results: dict[str, Any] = {"size": SIZES[size], "seeds": seeds, "step_cap": STEP_CAP}
    t0 = time.perf_counter()
    for name in a.datasets.split(","):
        console.print(f"[bold]adversarial requests on {name}[/]")
        drops = run_requests(name, strategies, methods, seeds, size, a.cache)
        results[name] = {"drops": drops, "verdict": print_requests(name, drops, seeds)}
    if not a.no_indirect:
        console.print("[bold]indirect attack on fashion_mnist[/]")
        results["indirect"] = run_indirect(victims, ind_methods, seeds, size, a.cache)
    console.print(f"total {time.perf_counter() - t0:.0f} s")
    if a.out:
        atomic_write_json(a.out, results)


if __name__ == "__main__":
    main()
