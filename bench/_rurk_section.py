"""RURK vs the original model: Avg. Gap and residual knowledge r_τ, in the methods benchmark's
settings (bench/methods.py: Fashion-MNIST, small_cnn; ``small`` = RURK's CIFAR-5 protocol,
``class_half``, ``random``).

RURK's hyper-parameters are tuned by Avg. Gap on the tuning seed 0 (random search over
RURK.search_space, with the methods benchmark's step caps in the large settings) and reported
on other seeds. r_τ (RURK Eq. 4, Gaussian, DESIGN.md τ grid) is computed for the original and
for RURK against the same gold model; the issue's target is mean r_τ ≤ 1.05 at every τ where
the original's r_τ exceeds 1.1.

Three RURK rows per seed:

* ``rurk`` — the paper's recipe (fixed Gaussian τ = 0.03), tuned by Avg. Gap alone with the
  methods benchmark's grid (``tune_setting``);
* ``rurk (multi-τ, RK-tuned)`` — RURK whose search space adds τ ∈ {0.03, 0.1, 0.3} and the
  extension ``tau_sampling="uniform"`` (each perturbed copy's std drawn from U(0, τ)), tuned on
  seed 0 by Avg. Gap **plus** a residual-knowledge penalty, ``RK_WEIGHT`` ×
  Σ_τ max(0, r_τ − 1.05) over the τ grid (r_τ estimated with ``C_TUNE`` perturbations of at
  most ``R_TUNE_MAX`` forget samples). The issue asks for both a
  small gap and r_τ ≤ 1.05; tuning on the gap alone picks settings that leave r_τ where the
  original had it, which is why both rows are reported;
* ``rurk (val-stopped, multi-τ)`` — fixed options (``VAL_OPTIONS``, chosen on seed 0) with the
  gold-free stopping rule ``stop_at_val_acc``: the ascent ends once the request is recognised
  no better than unseen validation images of its classes.

r_τ in the tables is estimated on at most ``R_FORGET_MAX`` forget samples (a seeded subsample;
r_τ is a mean over samples, so this is an unbiased estimate of the same quantity) with RURK's
c = 100 perturbations each.

    python bench/_rurk_section.py --quick
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from rich.table import Table

from methods import (
    RETAIN_EVAL_MAX,
    SETTINGS,
    STEP_CAPS,
    Prepared,
    console,
    prepare,
    tune_setting,
    tuning_eval,
)
from obliviate._io import atomic_write_json, read_json
from obliviate.metrics import DEFAULT_TAUS, avg_gap, residual_curve
from obliviate.unlearn import create_unlearner
from obliviate.unlearn.tune import core_metrics, gap_scorer, tune

#: Perturbations per forget sample for r_τ (RURK: 100).
C_FULL, C_QUICK = 100, 20
#: r_τ of a report row uses at most this many forget samples (seeded subsample).
R_FORGET_MAX = 200
#: Residual-aware tuning: perturbations per sample, forget samples, penalty weight, trials.
C_TUNE, R_TUNE_MAX, RK_WEIGHT, RK_TRIALS = 20, 200, 10.0, 10
#: The r_τ level the issue's target allows.
RK_BAR = 1.05
MULTI = "rurk (multi-τ, RK-tuned)"
#: RURK with the gold-free stopping rule (``stop_at_val_acc``); options fixed, chosen on seed 0
#: (small, and class_half at the quick size) and never tuned on a report seed.
VAL = "rurk (val-stopped, multi-τ)"
VAL_OPTIONS: dict[str, Any] = {
    "stop_at_val_acc": True,
    "lr": 0.03,
    "lambda_f": 0.1,
    "lambda_a": 0.3,
    "tau": 0.1,
    "tau_sampling": "uniform",
    "schedule": "constant",
    "max_steps": 300,
}


def rk_space(setting: str) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """(search space, fixed options) of the residual-aware RURK tuning in ``setting``."""
    space: dict[str, list[Any]] = {
        "lr": [0.003, 0.01, 0.03],
        "lambda_f": [0.0, 0.01, 0.03],
        "lambda_a": [0.03, 0.1, 0.3],
        "tau": [0.03, 0.1, 0.3],
        "tau_sampling": ["fixed", "uniform"],
    }
    fixed: dict[str, Any] = {}
    if setting == "small":
        # as the methods benchmark's small grids: 32-image batches, so that RURK moves at all
        space["epochs"] = [5, 10, 20]
        fixed["batch_size"] = 32
    else:  # the step cap binds (bench/methods.py bench_fixed): tuning at quick size transfers
        space["max_steps"] = list(STEP_CAPS)
        fixed["epochs"] = 10_000
    return space, fixed


def _forget_subset(task, n_max: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    f = task.forget
    if len(f) <= n_max:
        return f.x, f.y
    g = torch.Generator().manual_seed(seed)
    keep = torch.sort(torch.randperm(len(f), generator=g)[:n_max]).values
    return f.x[keep], f.y[keep]


def rk_penalty(r: dict[float, float | None]) -> float:
    """Σ_τ max(0, r_τ − RK_BAR) over the τ with a defined r_τ."""
    return sum(max(0.0, v - RK_BAR) for v in r.values() if v is not None)


def tune_rurk_rk(
    st_name: str, pr: Prepared, seed: int, trials: int, cache: Path, device: str
) -> dict[str, Any]:
    """RURK options chosen on ``pr`` (the tuning seed) by Avg. Gap + RK_WEIGHT × rk_penalty;
    stored in ``tuned_rk.json`` beside the methods benchmark's ``tuned.json``."""
    space, fixed = rk_space(st_name)
    n = trials or RK_TRIALS
    key = json.dumps(
        {"space": space, "fixed": fixed, "trials": n, "c": C_TUNE, "w": RK_WEIGHT}, sort_keys=True
    )
    path = cache / pr.tag / "tuned_rk.json"
    done = read_json(path, "tuning record", RuntimeError) if path.exists() else {}
    if done.get("key") == key:
        console.print(f"  [{st_name}] {MULTI}: {done['params']} (reused {path})")
        return done["params"]
    task = pr.task
    test, kw = tuning_eval(st_name, pr, seed, device)
    gm = core_metrics(pr.gold, task, test, seed=seed, **kw)
    gap_of = gap_scorer(gm, task, test, seed=seed, **kw)
    fx, fy = _forget_subset(task, R_TUNE_MAX, seed)

    def score(model, stats):
        gap, m = gap_of(model, stats)
        curve = residual_curve(
            model, pr.gold, fx, fy, DEFAULT_TAUS, c=C_TUNE, seed=seed, device=device
        )
        pen = rk_penalty({c.tau: c.mean for c in curve})
        return gap + RK_WEIGHT * pen, {**m, "gap": gap, "rk_penalty": pen}

    res = tune(
        "rurk",
        pr.original,
        task,
        score,
        space=space,
        seed=seed,
        base=fixed,
        strategy="random",
        n_trials=n,
    )
    best = min(res.trials, key=lambda t: t.score)
    atomic_write_json(path, {"key": key, "params": res.best_params, "score": res.best_score})
    console.print(
        f"  [{st_name}] {MULTI}: {res.best_params} (score {res.best_score:.2f} = gap "
        f"{best.metrics.get('gap', math.nan):.2f} + {RK_WEIGHT:g} × RK penalty "
        f"{best.metrics.get('rk_penalty', math.nan):.3f} on tuning seed {seed})"
    )
    return res.best_params


def run_rurk_section(
    quick: bool,
    seeds: list[int],
    *,
    settings: tuple[str, ...] = ("small", "class_half", "random"),
    tune_seed: int = 0,
    trials: int = 0,
    cache: Path = Path(".obliviate/bench/methods"),
    taus: tuple[float, ...] = DEFAULT_TAUS,
    device: str = "cpu",
    rk_trials: int = 0,
) -> list[dict[str, Any]]:
    """One row per (setting, seed, model ∈ {original, rurk, MULTI, VAL}): the four Avg. Gap inputs,
    the gap, r_τ means per τ (``r`` dict; None where skipped) and the tuned RURK options.

    Rows are cached in ``rurk_rows.json`` per (setting, size, seed), keyed by the options and
    the r_τ protocol, so a stopped run resumes."""
    rows: list[dict[str, Any]] = []
    c = C_QUICK if quick else C_FULL
    for st_name in settings:
        st = SETTINGS[st_name]
        # the methods benchmark's tuning: large settings at the quick size, same step budgets
        tq = quick or st_name != "small"
        paper = tune_setting(st, ["rurk"], tune_seed, tq, cache, True, trials, device)["rurk"]
        tpr = prepare(st, tune_seed, tq, cache, device)
        multi = tune_rurk_rk(st_name, tpr, tune_seed, rk_trials, cache, device)
        for seed in seeds:
            pr = prepare(st, seed, quick, cache, device)
            task, test, original, gold = pr.task, pr.test, pr.original, pr.gold
            kw = dict(seed=seed, retain_eval_max=RETAIN_EVAL_MAX, device=device)
            gm = core_metrics(gold, task, test, **kw)
            fx, fy = _forget_subset(task, R_FORGET_MAX, seed)
            path = cache / pr.tag / "rurk_rows.json"
            stored = read_json(path, "rurk rows", RuntimeError) if path.exists() else {}
            variants = (("original", None), ("rurk", paper), (MULTI, multi), (VAL, VAL_OPTIONS))
            for label, params in variants:
                key = json.dumps(
                    {"params": params, "c": c, "n": len(fx), "taus": list(taus)}, sort_keys=True
                )
                if stored.get(label, {}).get("key") == key:
                    rows.append(stored[label]["row"])
                    continue
                t0 = time.perf_counter()
                model = original
                if params is not None:
                    model = create_unlearner("rurk", **params).unlearn(original, task).model
                secs = time.perf_counter() - t0
                met = core_metrics(model, task, test, **kw)
                curve = residual_curve(model, gold, fx, fy, taus, c=c, seed=seed, device=device)
                row = {
                    "setting": st_name,
                    "seed": seed,
                    "model": label,
                    **met,
                    "gap": avg_gap(met, gm),
                    "r": {str(r.tau): r.mean for r in curve},
                    "params": params or {},
                    "seconds": secs if params is not None else 0.0,
                }
                rows.append(row)
                stored[label] = {"key": key, "row": row}
                atomic_write_json(path, stored)
    return rows


def _mean(v: list[float]) -> float:
    return sum(v) / len(v)


def check_targets(rows: list[dict[str, Any]]) -> list[str]:
    """Lines saying, per setting and RURK variant, whether mean r_τ ≤ RK_BAR wherever the
    original's mean r_τ exceeds 1.1 (the issue's target), with the variant's mean Avg. Gap."""
    out = []
    for st in dict.fromkeys(r["setting"] for r in rows):
        rs = [r for r in rows if r["setting"] == st]
        taus = list(rs[0]["r"])
        for variant in dict.fromkeys(r["model"] for r in rs if r["model"] != "original"):
            bad = []
            for t in taus:
                o = [r["r"][t] for r in rs if r["model"] == "original" and r["r"][t] is not None]
                u = [r["r"][t] for r in rs if r["model"] == variant and r["r"][t] is not None]
                if o and u and _mean(o) > 1.1 and _mean(u) > RK_BAR:
                    bad.append(f"τ={t}: original {_mean(o):.3f}, {variant} {_mean(u):.3f}")
            gap = _mean([r["gap"] for r in rs if r["model"] == variant])
            verdict = "r_τ target met" if not bad else "r_τ target MISSED at " + "; ".join(bad)
            out.append(f"{st} / {variant} (mean Avg. Gap {gap:.2f}): {verdict}")
    return out


def _fmt(v: list[float]) -> str:
    if not v:
        return "—"
    if len(v) == 1:
        return f"{v[0]:.3f}"
    return f"{statistics.mean(v):.3f} ± {statistics.stdev(v):.3f}"


def print_rows(rows: list[dict[str, Any]]) -> None:
    """Per-seed rows, then mean ± std per (setting, model), then the target lines."""
    taus = list(rows[0]["r"]) if rows else []
    t = Table(title="RURK vs original (Fashion-MNIST, small_cnn): Avg. Gap and r_τ (Gaussian)")
    for col in ("setting", "seed", "model", "Retain", "UA", "Test", "MIA", "Avg. Gap"):
        t.add_column(col, justify="right")
    for tau in taus:
        t.add_column(f"r@{tau}", justify="right")
    for r in rows:
        rv = ["—" if r["r"][x] is None else f"{r['r'][x]:.3f}" for x in taus]
        t.add_row(
            r["setting"],
            str(r["seed"]),
            r["model"],
            f"{r['acc/retain']:.2f}",
            f"{r['ua']:.2f}",
            f"{r['acc/test']:.2f}",
            f"{r['mia_efficacy']:.2f}",
            f"{r['gap']:.2f}",
            *rv,
        )
    console.print(t)
    m = Table(title="mean ± std over seeds")
    for col in ("setting", "model", "UA", "Avg. Gap", *(f"r@{tau}" for tau in taus)):
        m.add_column(col, justify="right")
    groups = dict.fromkeys((r["setting"], r["model"]) for r in rows)
    for st, model in groups:
        rs = [r for r in rows if r["setting"] == st and r["model"] == model]
        m.add_row(
            st,
            model,
            _fmt([r["ua"] for r in rs]),
            _fmt([r["gap"] for r in rs]),
            *(_fmt([r["r"][x] for r in rs if r["r"][x] is not None]) for x in taus),
        )
    console.print(m)
    for line in check_targets(rows):
        console.print(line)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seeds", default=None, help="Report seeds (default 1,2,3; quick: 1).")
    p.add_argument("--settings", default="small,class_half,random")
    p.add_argument("--trials", type=int, default=0, help="0: the methods benchmark's default.")
    p.add_argument("--cache", type=Path, default=Path(".obliviate/bench/methods"))
    p.add_argument("--rk-trials", type=int, default=0, help=f"0: {RK_TRIALS}.")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads.")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    seeds = [int(s) for s in (a.seeds or ("1" if a.quick else "1,2,3")).split(",")]
    t0 = time.perf_counter()
    rows = run_rurk_section(
        a.quick,
        seeds,
        settings=tuple(a.settings.split(",")),
        trials=a.trials,
        cache=a.cache,
        device=a.device,
        rk_trials=a.rk_trials,
    )
    print_rows(rows)
    console.print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
