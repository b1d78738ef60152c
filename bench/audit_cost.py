"""Wall time of a standard audit (``obliviate.audit.audit``) and of PGD-10 residual knowledge.

Standard audit (issue 3): accuracies, SVC MIA efficacy and the loss-threshold MIA, knowledge
contamination, Gaussian r_τ at one τ (0.03) with c = 100 on 1 000 forget samples, for
small_cnn on real Fashion-MNIST (full split: 60 000 train, 10 000 test; the request is 1 000
random training samples of class 0, so that contamination is defined) — the unlearned model
audited against the gold retrain and the original (three model columns), i.e. what
``obliviate audit --unlearned A --gold B --original C`` runs. The PGD-10 r_τ (same 1 000
samples, τ = 0.03, c = the metric's default for pgd, 20) is timed separately. Both are medians of
``--repeats`` runs; the table also lists the median time of each stage of the standard audit.

The three models are trained once and cached under ``--cache`` (original: 2 epochs; gold: the
same recipe without the 1 000 requested samples; "unlearned": the original fine-tuned for one
epoch on 5 000 retain samples — a stand-in, the audit's cost does not depend on the method).

    python bench/audit_cost.py                 # fashion_mnist, median of 3
    python bench/audit_cost.py --dataset mnist --repeats 1
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from obliviate.audit import audit
from obliviate.checkpoint import load_checkpoint
from obliviate.data import ForgetRequest, load_dataset, make_split
from obliviate.metrics import DEFAULT_C
from obliviate.train import TrainConfig, TrainedModel, fit, train_model


def prepare(dataset: str, cache: Path, n_forget: int) -> dict:
    """Train (or load from ``cache``) the original, gold and a stand-in unlearned model."""
    ds = load_dataset(dataset)
    split = make_split(ds, seed=0)
    g = torch.Generator().manual_seed(0)
    # one class only, so that contamination (damage on the OTHER classes) is defined
    cls0 = split.train[ds.labels_of(split.train) == 0]
    ids = cls0[torch.randperm(len(cls0), generator=g)[:n_forget]].sort().values
    req = ForgetRequest(ids, name=f"{n_forget} random samples of class 0")
    cfg = TrainConfig(epochs=2, batch_size=128, lr=0.05, seed=0)
    paths = {k: cache / f"{dataset}-c0-{n_forget}-{k}" for k in ("original", "gold", "unlearned")}
    if not all((p / "meta.json").exists() for p in paths.values()):
        orig = train_model(ds, split, "small_cnn", cfg, show_progress=False)
        orig.save(str(paths["original"]))
        gold = train_model(ds, split, "small_cnn", cfg, exclude=req, show_progress=False)
        gold.save(str(paths["gold"]), kind="gold")
        retain = split.train[~torch.isin(split.train, req.tensor)]
        sub = retain[torch.randperm(len(retain), generator=g)[:5000]]
        ft_cfg = TrainConfig(epochs=1, lr=0.01, seed=0)
        net = copy.deepcopy(orig.model)
        hist = fit(net, *ds.tensors(sub), ft_cfg, show_progress=False)
        unl = TrainedModel(net, ft_cfg, split, ds, hist, sub, req)
        unl.save(str(paths["unlearned"]), kind="unlearned", parent=str(paths["original"]))
    cks = {k: load_checkpoint(p) for k, p in paths.items()}
    timings = {
        "unlearn": cks["unlearned"].meta["history"]["seconds"],
        "gold": cks["gold"].meta["history"]["seconds"],
    }
    return {"ds": ds, "split": split, "req": req, "models": cks, "timings": timings}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="fashion_mnist", choices=["fashion_mnist", "mnist"])
    ap.add_argument("--repeats", type=int, default=3, help="runs per timing (median)")
    ap.add_argument("--pgd-repeats", type=int, default=None, help="default: --repeats")
    ap.add_argument("--n-forget", type=int, default=1000)
    ap.add_argument("--tau", type=float, default=0.03)
    ap.add_argument("--cache", type=Path, default=Path("runs/bench_audit_cost"))
    ap.add_argument("--show-report", action="store_true", help="print the last audit table")
    args = ap.parse_args()
    console = Console(width=120)

    with console.status("training / loading the three models (cached after the first run)"):
        p = prepare(args.dataset, args.cache, args.n_forget)
    m = p["models"]
    common = dict(dataset=p["ds"], split=p["split"], request=p["req"], taus=(args.tau,), seed=0)

    def standard():
        return audit(
            m["unlearned"].model, m["gold"].model, m["original"].model,
            perturbation="gaussian", c=100, timings=p["timings"], **common,
        )  # fmt: skip

    def pgd():
        return audit(
            m["unlearned"].model, m["gold"].model, m["original"].model,
            perturbation="pgd", attack_kw={"steps": 10}, metrics=["residual_knowledge"],
            **common,
        )  # fmt: skip

    runs, pgd_runs = [], []
    for i in range(args.repeats):
        with console.status(f"standard audit {i + 1}/{args.repeats}"):
            t0 = time.perf_counter()
            rep = standard()
            runs.append((time.perf_counter() - t0, rep))
    for i in range(args.pgd_repeats or args.repeats):
        with console.status(f"PGD-10 r_τ {i + 1}/{args.pgd_repeats or args.repeats}"):
            t0 = time.perf_counter()
            prep = pgd()
            pgd_runs.append((time.perf_counter() - t0, prep))

    sizes = rep.info["sizes"]
    t = Table(
        title=f"audit cost: small_cnn on {args.dataset} (train {len(p['split'].train)}, "
        f"test {sizes['test']}, forget {sizes['forget']}), 3 model columns, "
        f"median of {args.repeats}",
        caption=f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}); "
        f"load average at the end {os.getloadavg()[0]:.1f}",
    )
    t.add_column("what")
    t.add_column("seconds (median)", justify="right")
    t.add_column("runs", justify="right")
    t.add_column("target", justify="right")
    stages = list(runs[0][1].info["seconds"])
    for s in stages:
        if s == "total":
            continue
        vals = [r.info["seconds"].get(s, 0.0) for _, r in runs]
        t.add_row(f"  {s}", f"{statistics.median(vals):.2f}", _fmt(vals), "")
    tot = [s for s, _ in runs]
    ok = statistics.median(tot) < 90
    t.add_row(
        "[bold]standard audit (wall)[/]",
        f"[bold]{statistics.median(tot):.2f}[/]",
        _fmt(tot),
        "[green]< 90 ✓[/]" if ok else "[red]< 90 ✗[/]",
    )
    t.add_section()
    ptot = [s for s, _ in pgd_runs]
    c_pgd = DEFAULT_C["pgd"]
    t.add_row(
        f"PGD-10 r_τ (τ={args.tau:g}, c={c_pgd}, {sizes['forget']} samples, wall)",
        f"{statistics.median(ptot):.2f}",
        _fmt(ptot),
        "",
    )
    console.print(t)
    if args.show_report:
        console.print(rep)
        console.print(prep)


def _fmt(vals: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in vals)


if __name__ == "__main__":
    main()
