"""ROKA under the indirect attack, against grad_ascent and neggrad_plus at matched forgetting.

The indirect unlearning attack (ROKA, arXiv 2603.00436): the adversary requests the deletion of a
whole class c chosen as the nearest neighbour of a security-critical victim class t (cosine of
class centroids of the original model's penultimate features, on training data), hoping that
approximate unlearning damages t. Setting: MNIST, small_cnn, 6 000 training images (quick:
3 000), the victim t is the class whose nearest neighbour is closest (the most exposed pair)
unless ``victim`` is given.

Matched forgetting: every method is run with a growing number of optimiser steps (constant
learning rate, so a run of n steps is the prefix of a longer one) and the first run whose forget
accuracy is within ``match_pp`` points of gold's (gold never saw class c: 0 %) is kept; ROKA's
own stopping rule (``stop_forget_acc``) does the same inside one run. Reported: forget-class
accuracy (on the request, i.e. the training images of c) and victim-class test accuracy, with
the victim's loss relative to gold.

    python bench/_roka_section.py --quick
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from obliviate.data import ForgetRequest, load_dataset, make_split
from obliviate.inference import batched_logits
from obliviate.metrics._common import features
from obliviate.train import TrainConfig, train_model
from obliviate.unlearn import create_unlearner, make_task

console = Console(width=160)

#: Step ladder for matched forgetting (baselines have no stopping rule of their own).
STEP_LADDER = (1, 2, 3, 5, 8, 12, 18, 27, 40, 60, 90, 135, 200, 300)
#: Baselines and the options held fixed while their step count grows.
BASELINES: dict[str, dict[str, Any]] = {
    "grad_ascent": {"lr": 1e-3, "schedule": "constant", "epochs": 1000},
    "neggrad_plus": {"alpha": 0.99, "lr": 0.01, "schedule": "constant", "epochs": 1000},
}
ROKA_OPTIONS: dict[str, Any] = {"eval_every": 1}


def nearest_pair(model, x, y, num_classes: int, victim: int | None) -> tuple[int, int, float]:
    """(victim t, forget class c, cosine): c = t's nearest class by penultimate centroid cosine;
    without ``victim``, the pair with the highest cosine."""
    f = features(model, x)
    cents = F.normalize(torch.stack([f[y == k].mean(0) for k in range(num_classes)]), dim=1)
    sim = cents @ cents.T
    sim.fill_diagonal_(-2.0)
    if victim is None:
        flat = int(sim.argmax())
        t, c = divmod(flat, num_classes)
    else:
        t, c = victim, int(sim[victim].argmax())
    return t, c, float(sim[t, c])


def _acc(model, x, y) -> float:
    return 100.0 * float((batched_logits(model, x).argmax(1) == y).double().mean())


def run_roka_section(
    quick: bool,
    seeds: list[int],
    *,
    dataset: str = "mnist",
    victim: int | None = None,
    match_pp: float = 2.0,
    roka_options: dict[str, Any] | None = None,
) -> list[dict]:
    """One row per (seed, method): forget-class and victim-class accuracy at matched forgetting.

    Rows carry ``seed, method, victim, forget_class, steps, forget_acc, victim_acc,
    victim_loss_vs_gold (pp), matched (bool), seconds``.
    """
    ds = load_dataset(dataset)
    rows: list[dict] = []
    for seed in seeds:
        split = make_split(ds, seed=seed, train=3000 if quick else 6000, val=500)
        cfg = TrainConfig(epochs=4 if quick else 6, lr=0.05, batch_size=64, seed=seed)
        tm = train_model(ds, split, "small_cnn", cfg, show_progress=False, evaluate_parts=())
        xtr, ytr = ds.tensors(split.train)
        t, c, cos = nearest_pair(tm.model, xtr, ytr, ds.num_classes, victim)
        req = ForgetRequest(split.train[ytr == c], name=f"class-{c}")
        gold = train_model(
            ds, split, "small_cnn", cfg, exclude=req, show_progress=False, evaluate_parts=()
        ).model
        task = make_task(ds, split, req, seed=seed)
        xte, yte = ds.tensors(split.test)
        xv, yv = xte[yte == t], yte[yte == t]
        fx, fy = task.forget.x, task.forget.y
        gold_f, gold_v = _acc(gold, fx, fy), _acc(gold, xv, yv)
        target = gold_f + match_pp
        base = {"seed": seed, "victim": t, "forget_class": c, "cosine": cos}
        for label, m in (("original", tm.model), ("gold", gold)):
            rows.append(
                {
                    **base,
                    "method": label,
                    "steps": 0,
                    "forget_acc": _acc(m, fx, fy),
                    "victim_acc": _acc(m, xv, yv),
                    "victim_loss_vs_gold": gold_v - _acc(m, xv, yv),
                    "matched": label == "gold",
                    "seconds": 0.0,
                }
            )
        opts = {**ROKA_OPTIONS, **(roka_options or {}), "stop_forget_acc": target}
        t0 = time.perf_counter()
        res = create_unlearner("roka", **opts).unlearn(tm.model, task)
        fa = _acc(res.model, fx, fy)
        rows.append(
            {
                **base,
                "method": "roka",
                "steps": res.stats["steps"],
                "forget_acc": fa,
                "victim_acc": _acc(res.model, xv, yv),
                "victim_loss_vs_gold": gold_v - _acc(res.model, xv, yv),
                "matched": fa <= target,
                "seconds": time.perf_counter() - t0,
            }
        )
        for name, fixed in BASELINES.items():
            t0 = time.perf_counter()
            for steps in STEP_LADDER:
                r = create_unlearner(name, **fixed, max_steps=steps).unlearn(tm.model, task)
                fa = _acc(r.model, fx, fy)
                if fa <= target:
                    break
            rows.append(
                {
                    **base,
                    "method": name,
                    "steps": steps,
                    "forget_acc": fa,
                    "victim_acc": _acc(r.model, xv, yv),
                    "victim_loss_vs_gold": gold_v - _acc(r.model, xv, yv),
                    "matched": fa <= target,
                    "seconds": time.perf_counter() - t0,
                }
            )
    return rows


def print_rows(rows: list[dict]) -> None:
    t = Table(title="ROKA vs baselines at matched forgetting (indirect attack: forget t's nearest)")
    for col in (
        "seed",
        "victim t",
        "forget c",
        "cos",
        "method",
        "steps",
        "forget acc",
        "victim acc",
        "victim loss vs gold (pp)",
        "matched",
        "time (s)",
    ):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(
            str(r["seed"]),
            str(r["victim"]),
            str(r["forget_class"]),
            f"{r['cosine']:.3f}",
            r["method"],
            str(r["steps"]),
            f"{r['forget_acc']:.2f}",
            f"{r['victim_acc']:.2f}",
            f"{r['victim_loss_vs_gold']:+.2f}",
            "yes" if r["matched"] else "NO",
            f"{r['seconds']:.1f}",
        )
    console.print(t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seeds", default="1")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--victim", type=int, default=None)
    a = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rows = run_roka_section(
        a.quick, [int(s) for s in a.seeds.split(",")], dataset=a.dataset, victim=a.victim
    )
    print_rows(rows)
    console.print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
