"""Does every registered unlearner, and the defenses and metrics around them, run on a device?

Trains small_cnn for one epoch on a few thousand MNIST images on ``--device``, then runs each
registered unlearner (SISA on a 2-shard ensemble trained there), healing with twins on penultimate
features, residual knowledge r_τ, an adversarial request selection and the MIA, all on that
device. Each check records pass or fail with its error; the table lists them, the JSON (``--out``)
holds the tracebacks, and the exit status is 1 when any check failed. ``--passing`` writes the
comma-separated names of the unlearners that passed (for a benchmark's ``--methods``).

A check passes when it raises nothing, the unlearned model's parameters are finite and live on the
device, and its logits on the forget set come back finite. This is a smoke test of device
placement, not of quality (the benchmarks measure that).

    python bench/device_check.py --device cuda --out device.json
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from obliviate.data import ForgetRequest, load_dataset, make_split
from obliviate.inference import batched_logits
from obliviate.train import TrainConfig, train_model
from obliviate.unlearn import UNLEARNERS, create_unlearner, make_task
from obliviate.utils import resolve_device

console = Console(width=160)


def _check_model(model: torch.nn.Module, x: torch.Tensor, dev: torch.device) -> None:
    for name, p in model.named_parameters():
        if p.device.type != dev.type:
            raise AssertionError(f"parameter {name} is on {p.device}, expected {dev}")
        if not torch.isfinite(p).all():
            raise FloatingPointError(f"parameter {name} has non-finite values")
    out = batched_logits(model, x, device=dev)
    if not torch.isfinite(out).all():
        raise FloatingPointError("non-finite logits on the forget set")


def run_checks(device: str, methods: list[str], n_train: int, seed: int) -> list[dict[str, Any]]:
    """One record per check: ``name, ok, seconds, detail`` (the error's traceback when failed)."""
    dev = resolve_device(device)
    ds = load_dataset("mnist")
    split = make_split(ds, seed=seed, train=n_train, val=200, reserve=1000, test_per_class=50)
    cfg = TrainConfig(epochs=1, lr=0.05, batch_size=64, seed=seed)
    original = train_model(
        ds, split, "small_cnn", cfg, show_progress=False, evaluate_parts=(), device=dev
    ).model
    y = ds.labels_of(split.train)
    req = ForgetRequest(split.train[y == 0][:20], name="class0-20")
    task = make_task(ds, split, req, seed=seed, train_config=cfg.to_dict(), device=str(dev))
    fx = task.forget.x
    records: list[dict[str, Any]] = []

    def check(name: str, fn: Callable[[], str]) -> None:
        t0 = time.perf_counter()
        try:
            detail, ok = fn(), True
        except Exception as e:  # recorded, printed and turned into the exit status
            detail, ok = "".join(traceback.format_exception(e)), False
            console.print(f"[red]{name} failed[/]:\n{detail}")
        records.append(
            {"name": name, "ok": ok, "seconds": time.perf_counter() - t0, "detail": detail}
        )

    for name in methods:

        def one(name: str = name) -> str:
            model: torch.nn.Module = original
            if "needs_ensemble" in UNLEARNERS.get(name).tags:
                from obliviate.unlearn.sisa import train_sisa_model

                model = train_sisa_model(
                    ds, split, "small_cnn", cfg, shards=2, slices=1, device=dev
                )
            res = create_unlearner(name).unlearn(model, task)
            _check_model(res.model, fx, dev)
            return f"{res.stats['seconds']:.2f} s"

        check(f"unlearn/{name}", one)

    def healing() -> str:
        from obliviate.defenses.healing import HealConfig, heal

        res = heal(
            original,
            ds,
            split,
            req,
            pool="twins",
            similarity="feature_cosine",
            config=HealConfig(epochs=1),
            original=original,
            seed=seed,
            device=str(dev),
        )
        _check_model(res.model, fx, dev)
        return f"{res.stats['n_replacements']} twins"

    def residual() -> str:
        from obliviate.metrics import residual_curve

        curve = residual_curve(original, original, fx, task.forget.y, (0.02,), c=4, device=dev)
        return f"r_0.02 = {curve[0].mean:.3f}"

    def requests() -> str:
        from obliviate.attacks.requests import select_request

        sel = select_request("lowest_logit", original, ds, split, budget=20, seed=seed, device=dev)
        return f"{len(sel.request)} ids"

    def mia() -> str:
        from obliviate.metrics import mia_efficacy

        r = task.retain
        xt, yt = ds.tensors(split.test)
        v = mia_efficacy(original, (r.x, r.y), (xt, yt), (fx, task.forget.y), seed=seed, device=dev)
        return f"{v:.1f} %"

    for name, fn in (
        ("heal/twins-feature_cosine", healing),
        ("residual_curve", residual),
        ("select_request/lowest_logit", requests),
        ("mia_efficacy", mia),
    ):
        check(name, fn)
    return records


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--methods", default="all", help="Comma-separated unlearners, or 'all'.")
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="Write the records as JSON here.")
    p.add_argument("--passing", type=Path, default=None, help="Write passing unlearners here.")
    a = p.parse_args()
    methods = UNLEARNERS.names() if a.methods == "all" else a.methods.split(",")
    for m in methods:
        UNLEARNERS.get(m)  # an unknown name is an error that lists the known ones
    t0 = time.perf_counter()
    recs = run_checks(a.device, methods, a.n_train, a.seed)
    t = Table(title=f"device check on {resolve_device(a.device)} ({torch.__version__})")
    for col in ("check", "result", "seconds", "detail"):
        t.add_column(col)
    for r in recs:
        last = r["detail"].strip().splitlines()[-1] if r["detail"].strip() else ""
        t.add_row(
            r["name"],
            "[green]pass[/]" if r["ok"] else "[red]FAIL[/]",
            f"{r['seconds']:.2f}",
            last[:90],
        )
    console.print(t)
    console.print(f"total {time.perf_counter() - t0:.0f} s")
    if a.out:
        a.out.write_text(json.dumps({"device": str(resolve_device(a.device)), "checks": recs}))
    if a.passing:
        ok = [r["name"].removeprefix("unlearn/") for r in recs if r["ok"]]
        a.passing.write_text(",".join(n for n in ok if n in methods))
    raise SystemExit(0 if all(r["ok"] for r in recs) else 1)


if __name__ == "__main__":
    main()
