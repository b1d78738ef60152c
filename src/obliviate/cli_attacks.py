"""``obliviate attack …``: adversarial requests, the indirect attack and the residual probe.

Registered on the main app by ``obliviate.cli`` (``register(app)``); each command is a thin
wrapper over :mod:`obliviate.attacks` (artifacts loaded and unlearned through
:mod:`obliviate.steps`) and prints what it chose and the damage it measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.table import Table

from obliviate._io import atomic_write_json
from obliviate.attacks.indirect import indirect_attack_report, resolve_class, select_indirect
from obliviate.attacks.probe import probe as run_probe
from obliviate.attacks.requests import select_request
from obliviate.audit.config import C_MAX
from obliviate.cli_common import (
    DEVICE_HELP,
    _device_option,
    _fail,
    _option_value,
    _out_dir,
    _out_file,
    _seed_option,
    _size,
    console,
)
from obliviate.config import STEPS_MAX, check_value, parse_set_options
from obliviate.data import ForgetRequest
from obliviate.errors import CheckpointError, ConfigError, ObliviateError
from obliviate.steps import load_artifact, load_request, unlearn_step
from obliviate.train import evaluate
from obliviate.unlearn import UNLEARNERS


def requests_cmd(
    strategy: Annotated[
        str,
        typer.Option(
            help="random, class, lowest_logit, highest_loss, gradient_norm, influence, adaptive."
        ),
    ],
    budget: Annotated[str, typer.Option(help="Samples (int) or fraction of train (0-1).")],
    model: Annotated[Path, typer.Option(help="Checkpoint of the trained model.")],
    out: Annotated[Path, typer.Option(help="Request JSON to write.", callback=_out_file)],
    classes: Annotated[
        str | None, typer.Option(help="Classes the attacker may request (comma separated).")
    ] = None,
    controlled: Annotated[
        Path | None, typer.Option(help="JSON of the ids the attacker controls.")
    ] = None,
    method: Annotated[
        str | None,
        typer.Option(help="Target unlearning method: adaptive's proxy, and measures damage."),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="A strategy option key=value (repeatable)."),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed of the selection (and unlearning).", callback=_seed_option)
    ] = 0,
    device: Annotated[str, typer.Option(help=DEVICE_HELP, callback=_device_option)] = "cpu",
) -> None:
    """Select an adversarial deletion request and (with --method) measure its damage."""
    try:
        if method:
            UNLEARNERS.get(method)  # an unknown method is refused before any work or write
        ck = load_artifact(model, device)
        ds = ck.dataset
        cls = None
        if classes:
            cls = [resolve_class(ds, c.strip()) for c in classes.split(",") if c.strip()]
        ctrl = list(ForgetRequest.load(controlled).ids) if controlled else None
        opts = {k: _option_value(v) for k, v in parse_set_options(set_).items()}
        if strategy == "adaptive":
            opts.setdefault("method", method)
            opts.setdefault("train_config", ck.meta.get("train_config"))
        sel = select_request(
            strategy,
            ck.model,
            ds,
            ck.split,
            budget=_size(budget, "--budget"),  # type: ignore[arg-type]
            seed=seed,
            classes=cls,
            controlled_ids=ctrl,
            device=device,
            **opts,
        )
        m_after = m_before = None
        if method:
            res = unlearn_step(method, ck, sel.request, seed=seed, device=device)
            kw = dict(parts=("test",), request=sel.request, per_class=False, device=device)
            m_before = evaluate(ck.model, ds, ck.split, **kw)
            m_after = evaluate(res.model, ds, ck.split, **kw)
        sel.request.save(out)  # only once everything succeeded (temp file + rename)
    except ObliviateError as e:
        _fail(e)
    t = Table(title=f"request chosen by {strategy!r} ({len(sel.request)} samples)")
    t.add_column("class")
    t.add_column("samples", justify="right")
    for c, n in enumerate(sel.details["per_class"]):
        if n:
            t.add_row(ds.class_names[c], str(n))
    console.print(t)
    score = "n/a (optimises nothing)" if sel.score != sel.score else f"{sel.score:.4g}"
    console.print(f"score: {score}")
    if m_before is not None and m_after is not None:
        d = Table(title=f"damage after unlearning with {method!r}")
        for col in ("metric", "before", "after", "drop (pp)"):
            d.add_column(col, justify="right")
        for k in ("acc/test", "acc/forget", "acc/retain"):
            d.add_row(
                k, f"{m_before[k]:.2f}", f"{m_after[k]:.2f}", f"{m_before[k] - m_after[k]:+.2f}"
            )
        console.print(d)
    console.print(f"request written to [bold]{out}[/]")


def indirect_cmd(
    victim_class: Annotated[str, typer.Option(help="Victim class t (index or name).")],
    model: Annotated[Path, typer.Option(help="Checkpoint of the trained model.")],
    method: Annotated[
        list[str] | None,
        typer.Option("--method", help="Unlearning method to measure (repeatable)."),
    ] = None,
    by: Annotated[
        str, typer.Option(help="centroid_cosine, confusion or input_x_gradient.")
    ] = "centroid_cosine",
    mode: Annotated[str, typer.Option(help="class (a whole class) or samples.")] = "class",
    budget: Annotated[
        str | None, typer.Option(help="Samples or fraction (required in samples mode).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write the chosen request here.", callback=_out_file)
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the report here.", callback=_out_file)
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed of the selection and unlearning.", callback=_seed_option)
    ] = 0,
    device: Annotated[str, typer.Option(help=DEVICE_HELP, callback=_device_option)] = "cpu",
) -> None:
    """ROKA's indirect attack: request a neighbour of the victim class, measure the drop."""
    try:
        ck = load_artifact(model, device)
        ds = ck.dataset
        b = _size(budget, "--budget")
        report = None
        if method:
            report = indirect_attack_report(
                ck.model,
                ds,
                ck.split,
                victim_class,
                list(method),
                train_config=ck.meta.get("train_config"),
                seed=seed,
                by=by,  # type: ignore[arg-type]
                mode=mode,  # type: ignore[arg-type]
                budget=b,
                device=device,
            )
            sel = report.selection
        else:
            sel = select_indirect(
                ck.model,
                ds,
                ck.split,
                victim_class,
                mode=mode,  # type: ignore[arg-type]
                by=by,  # type: ignore[arg-type]
                budget=b,
                seed=seed,
                device=device,
            )
        if out:
            sel.request.save(out)
        if json_out and report is not None:
            atomic_write_json(json_out, report.to_dict())
    except ObliviateError as e:
        _fail(e)
    t = Table(title=f"neighbours of victim class {sel.details['victim_name']!r} (by {by})")
    for col in ("rank", "class", "similarity"):
        t.add_column(col, justify="right")
    for i, (c, s) in enumerate(sel.ranking):
        t.add_row(str(i + 1), ds.class_names[c], f"{s:.4f}")
    console.print(t)
    what = (
        f"all {len(sel.request)} training samples of class {ds.class_names[sel.forget_class]!r}"
        if sel.forget_class is not None
        else f"{len(sel.request)} samples, per class {sel.details['per_class']}"
    )
    console.print(f"chosen request: {what}")
    if report is not None:
        console.print(report)
    if out:
        console.print(f"request written to [bold]{out}[/]")


def probe_cmd(
    unlearned: Annotated[Path, typer.Option(help="Checkpoint of the unlearned model.")],
    gold: Annotated[Path, typer.Option(help="Checkpoint of the gold retrain.")],
    request: Annotated[Path, typer.Option(help="Forget request JSON (the probed samples).")],
    tau: Annotated[
        list[float] | None, typer.Option("--tau", help="Radius / noise level τ (repeatable).")
    ] = None,
    kind: Annotated[str, typer.Option(help="gaussian, uniform, fgsm or pgd.")] = "pgd",
    c: Annotated[
        int | None, typer.Option(help="Perturbations per sample (default 100; 20 for pgd).")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="PGD steps (default 10).")] = None,
    alpha: Annotated[float | None, typer.Option(help="FGSM/PGD step size.")] = None,
    max_samples: Annotated[
        int | None, typer.Option(help="Probe at most this many request samples (seeded).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for the best inputs and the summary.", callback=_out_dir),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed of the perturbations.", callback=_seed_option)
    ] = 0,
    device: Annotated[str, typer.Option(help=DEVICE_HELP, callback=_device_option)] = "cpu",
) -> None:
    """Search τ-balls around forgotten samples for inputs the unlearned model still knows."""
    try:
        # bounds checked before any model is loaded (c copies of every sample are held at once)
        check_value("--c", c, int, ge=1, le=C_MAX, optional=True)
        check_value("--steps", steps, int, ge=1, le=STEPS_MAX, optional=True)
        check_value("--alpha", alpha, float, gt=0, le=1, optional=True)
        check_value("--max-samples", max_samples, int, ge=1, optional=True)
        for t in tau or ():
            check_value("--tau", t, float, ge=0, le=1)
        ck_u = load_artifact(unlearned, device)
        ck_g = load_artifact(gold, device)
        if ck_g.split.hash != ck_u.split.hash:
            raise CheckpointError(
                f"unlearned {unlearned} (split {ck_u.split.hash[:12]}) and gold {gold} "
                f"(split {ck_g.split.hash[:12]}) were trained on different splits"
            )
        ds = ck_u.dataset
        req = load_request(request, ck_u.split)
        ids = req.tensor
        if max_samples is not None:
            if max_samples < 1:
                raise ConfigError(f"--max-samples must be >= 1, got {max_samples}")
            g = torch.Generator().manual_seed(seed)
            ids = torch.sort(ids[torch.randperm(len(ids), generator=g)[:max_samples]]).values
        x, y = ds.tensors(ids)
        res = run_probe(
            ck_u.model,
            ck_g.model,
            (x, y, ids),
            taus=tuple(tau) if tau else (0.03,),
            kind=kind,
            c=c,
            seed=seed,
            steps=steps,
            alpha=alpha,
            device=device,
            out=out,
        )
    except ObliviateError as e:
        _fail(e)
    console.print(res)
    console.print(
        "found: the unlearned model predicts the forgotten label on some perturbed input; "
        "'found, not gold': the gold model does not — residual knowledge."
    )
    if out:
        console.print(f"best inputs and summary written to [bold]{out}[/]")


def register(app: typer.Typer) -> None:
    """Add the ``attack`` sub-command group (requests, indirect, probe) to ``app``."""
    attack = typer.Typer(
        help="Attacks on unlearning: adversarial requests, indirect attack, residual probe.",
        no_args_is_help=True,
    )
    app.add_typer(attack, name="attack")
    attack.command("requests")(requests_cmd)
    attack.command("indirect")(indirect_cmd)
    attack.command("probe")(probe_cmd)
