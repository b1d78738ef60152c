"""Speed of the healing similarity index on MNIST (issue 6 targets, medians of repeated runs).

(a) 25 requests against a 20 000-element reserve: ``SparePool.take`` on a pool holding the whole
    reserve, whose embedding was built once beforehand (reported separately) — each request
    embeds its 25 queries, runs the batched kNN and the greedy unique matching. Target ≪ 1 s.
(b) A full twin index for the 40 000 training elements: ``TwinIndex.build`` from scratch
    (embedding of train and reserve, Mahalanobis fit, per-class chunked products). Target < 60 s.

Split: MNIST's official 10k test, 20 000 reserve, 40 000 train (the healing notebooks' sizes).
Feature similarities use a randomly initialised small_cnn: the timing of a forward pass does not
depend on the weights. Run with the thread count you want to report, e.g.

    OMP_NUM_THREADS=2 python bench/healing_index.py
    OMP_NUM_THREADS=1 python bench/healing_index.py --repeats 5 --index-repeats 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from rich.console import Console
from rich.table import Table

from obliviate.data import load_dataset, make_split
from obliviate.defenses.healing import SparePool
from obliviate.defenses.similarity import SIMILARITIES, TwinIndex, uses_features
from obliviate.models import create_model

console = Console(width=140)
TARGET_REQUEST_S = 1.0
TARGET_INDEX_S = 60.0


def verdict(seconds: float, target: float) -> str:
    return (
        f"[green]yes[/] ({seconds / target:.0%} of {target:g} s)"
        if seconds < target
        else (f"[red]no[/] ({seconds / target:.1f}× {target:g} s)")
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--similarities", default=",".join(SIMILARITIES))
    ap.add_argument("--repeats", type=int, default=9, help="timed 25-id requests per similarity")
    ap.add_argument("--index-repeats", type=int, default=3, help="full index builds")
    ap.add_argument("--requests", type=int, default=25)
    ap.add_argument("--reserve", type=int, default=20_000)
    ap.add_argument("--train", type=int, default=40_000)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    sims = [s.strip() for s in args.similarities.split(",") if s.strip()]

    ds = load_dataset("mnist")
    split = make_split(ds, seed=0, reserve=args.reserve, train=args.train)
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=ds.num_classes).eval()
    console.print(
        f"MNIST split {split.sizes()}; torch threads {torch.get_num_threads()}; "
        f"{args.repeats} request repeats, {args.index_repeats} index builds"
    )
    t = Table(title="healing similarity index: medians (seconds)")
    for col in (
        "similarity",
        "reserve embedding (once)",
        f"{args.requests} requests vs {len(split.reserve)} reserve",
        "< 1 s",
        f"full index, {len(split.train)} train",
        "< 60 s",
    ):
        t.add_column(col, justify="right")
    for sim in sims:
        m = model if uses_features(sim) else None
        pool = SparePool.from_split(ds, split)
        t0 = time.perf_counter()
        pool.searcher(ds, sim, m, device=args.device)
        embed_s = time.perf_counter() - t0
        g = torch.Generator().manual_seed(0)
        req_times = []
        for _ in range(args.repeats):
            q = split.train[torch.randperm(len(split.train), generator=g)[: args.requests]]
            xq, yq = ds.tensors(q)
            t0 = time.perf_counter()
            got = pool.take(xq, yq, sim, dataset=ds, model=m, query_ids=q, device=args.device)
            req_times.append(time.perf_counter() - t0)
            assert (got >= 0).all() and len(set(got.tolist())) == len(q)
        idx_times = []
        for _ in range(args.index_repeats):
            t0 = time.perf_counter()
            TwinIndex.build(ds, split, similarity=sim, model=m, device=args.device)
            idx_times.append(time.perf_counter() - t0)
        r_med, i_med = statistics.median(req_times), statistics.median(idx_times)
        t.add_row(
            sim,
            f"{embed_s:.2f}",
            f"{r_med:.3f}",
            verdict(r_med, TARGET_REQUEST_S),
            f"{i_med:.1f}",
            verdict(i_med, TARGET_INDEX_S),
        )
        console.print(
            f"{sim}: request times {[round(x, 3) for x in req_times]}, "
            f"index times {[round(x, 1) for x in idx_times]}"
        )
    console.print(t)


if __name__ == "__main__":
    main()
