"""The main job (``make demo``): train small_cnn on real MNIST, retrain the gold model without a
random 1 % request, and print both models' accuracy side by side.

Until the end-to-end scenario runner exists this is the whole story the foundation can tell: the
original model, the gold retrain that every unlearning method will be measured against, and the
gap between them on the forget set.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from obliviate.data import ForgetRequest, load_dataset, make_split
from obliviate.train import TrainConfig, retrain, train_model


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument(
        "--out", type=Path, default=None, help="Folder for the checkpoints (default: temp)."
    )
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument(
        "--train-size", type=int, default=20000, help="Training samples (0: all 60k minus reserve)."
    )
    p.add_argument("--forget-fraction", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    console = Console()
    out = a.out or Path(tempfile.mkdtemp(prefix="obliviate-demo-"))
    t0 = time.perf_counter()
    ds = load_dataset("mnist")
    split = make_split(ds, seed=a.seed, reserve=2000, val=1000, train=a.train_size or None)
    console.print(f"[bold]data[/] {ds!r}; split {split.sizes()} (hash {split.hash[:12]})")
    cfg = TrainConfig(epochs=a.epochs, lr=0.05, batch_size=128, seed=a.seed)
    original = train_model(ds, split, "small_cnn", cfg)
    original.save(str(out / "original"))
    g = torch.Generator().manual_seed(a.seed)
    k = max(1, int(a.forget_fraction * len(split.train)))
    req = ForgetRequest(
        split.train[torch.randperm(len(split.train), generator=g)[:k]], name="random-1%"
    )
    req.save(out / "request.json")
    gold = retrain(str(out / "original"), req)
    gold.save(str(out / "gold"), kind="gold", parent=str(out / "original"))
    from obliviate.train import evaluate

    m_orig = evaluate(original.model, ds, split, parts=("test", "val"), request=req)
    m_gold = gold.metrics
    t = Table(title=f"small_cnn on real MNIST: original vs gold retrain without {k} random samples")
    t.add_column("metric")
    t.add_column("original", justify="right")
    t.add_column("gold", justify="right")
    t.add_column("Δ", justify="right")
    for key in ("acc/retain", "acc/forget", "acc/test", "acc/val"):
        t.add_row(
            key, f"{m_orig[key]:.2f}", f"{m_gold[key]:.2f}", f"{m_orig[key] - m_gold[key]:+.2f}"
        )
    t.add_row("train seconds", f"{original.history.seconds:.1f}", f"{gold.history.seconds:.1f}", "")
    console.print(t)
    pc = Table(title="test accuracy per class (%)")
    pc.add_column("model")
    for c in ds.class_names:
        pc.add_column(c, justify="right")
    for name, m in (("original", m_orig), ("gold", m_gold)):
        pc.add_row(name, *[f"{m['per_class/test'][c]:.1f}" for c in ds.class_names])
    console.print(pc)
    console.print(f"checkpoints in [bold]{out}[/] — total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
