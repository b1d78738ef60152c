"""Images/s of obliviate's training loop (``obliviate.train.fit``) vs a bare torch loop.

Both loops train the same architecture from the same initial weights on the same in-memory
tensors with the same optimiser (SGD, momentum 0.9, weight decay 5e-4) and batch size; runs are
interleaved (bare, library, bare, library, …) and the table reports medians. Target: the library
loop within 10 % of the bare loop.

    python bench/train_throughput.py            # small_cnn on full MNIST, resnet20 on 3×32×32
    python bench/train_throughput.py --quick    # smaller sizes, for a smoke run
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from obliviate.data import load_dataset
from obliviate.models import create_model
from obliviate.train import TrainConfig, fit


def bare_loop(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, bs: int, seed: int) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(seed)
    model.train()
    perm = torch.randperm(len(x), generator=g)
    for i in range(0, len(x), bs):
        idx = perm[i : i + bs]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def library_loop(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    bs: int,
    seed: int,
    show_progress: bool,
) -> None:
    cfg = TrainConfig(epochs=1, batch_size=bs, lr=0.05, seed=seed, schedule="cosine")
    fit(model, x, y, cfg, show_progress=show_progress)


def measure(
    name: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, bs: int, repeats: int
) -> dict[str, float]:
    times: dict[str, list[float]] = {"bare": [], "library": [], "library+bar": []}
    fit(
        copy.deepcopy(model),
        x[: bs * 4],
        y[: bs * 4],
        TrainConfig(epochs=1, batch_size=bs),
        show_progress=False,
    )  # warm-up
    for r in range(repeats):
        for kind in times:
            m = copy.deepcopy(model)
            t0 = time.perf_counter()
            if kind == "bare":
                bare_loop(m, x, y, bs, r)
            else:
                library_loop(m, x, y, bs, r, show_progress=kind == "library+bar")
            times[kind].append(time.perf_counter() - t0)
    return {k: len(x) / statistics.median(v) for k, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="Small sizes (smoke run).")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    torch.set_num_threads(2)
    rows = []
    mnist = load_dataset("mnist")
    n = 6000 if a.quick else 60000
    x, y = mnist.tensors(mnist.ids[:n])
    torch.manual_seed(0)
    cnn = create_model("small_cnn", num_classes=10, in_channels=1, image_size=[28, 28])
    rows.append(
        ("small_cnn", f"MNIST {n}×1×28×28", measure("small_cnn", cnn, x, y, 128, a.repeats))
    )
    m = 1000 if a.quick else 5000
    g = torch.Generator().manual_seed(0)
    xc = torch.rand(m, 3, 32, 32, generator=g)
    yc = torch.randint(0, 10, (m,), generator=g)
    torch.manual_seed(0)
    r20 = create_model("resnet20", num_classes=10, in_channels=3, image_size=[32, 32])
    rows.append(
        ("resnet20", f"random {m}×3×32×32", measure("resnet20", r20, xc, yc, 128, a.repeats))
    )
    t = Table(title=f"training throughput, images/s (median of {a.repeats}, 2 threads, batch 128)")
    for col in (
        "model",
        "data",
        "bare loop",
        "library",
        "library ratio",
        "library+progress bar",
        "ratio",
    ):
        t.add_column(col, justify="right")
    for name, data, r in rows:
        t.add_row(
            name,
            data,
            f"{r['bare']:.0f}",
            f"{r['library']:.0f}",
            f"{r['library'] / r['bare']:.3f}",
            f"{r['library+bar']:.0f}",
            f"{r['library+bar'] / r['bare']:.3f}",
        )
    Console(width=140).print(t)


if __name__ == "__main__":
    main()
