"""``obliviate`` command line: a thin layer over the library (typer + rich)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from obliviate.errors import ConfigError, ObliviateError

app = typer.Typer(
    name="obliviate",
    help="Robust machine unlearning: unlearn, attack, heal, and audit against a gold retrain.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Datasets shipped offline in packages.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()


def _fail(e: Exception) -> None:
    typer.echo(f"error: {e}", err=True)  # one unwrapped line that names the bad input
    raise typer.Exit(code=2)


def _parse_classes(classes: str | None) -> list[str] | None:
    return None if not classes else [c.strip() for c in classes.split(",") if c.strip()]


def _size(v: str | None) -> int | float | None:
    if v is None:
        return None
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            raise typer.BadParameter(f"expected a count or a fraction, got {v!r}") from None


def print_metrics(
    title: str, metrics: dict[str, Any], class_names: list[str] | None = None
) -> None:
    """Print split accuracies, then per-class test accuracy, as rich tables."""
    t = Table(title=title)
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in metrics.items():
        if isinstance(v, float | int):
            t.add_row(k, f"{v:.2f}")
    console.print(t)
    pc = metrics.get("per_class/test")
    if pc:
        t2 = Table(title="test accuracy per class (%)")
        for name in pc:
            t2.add_column(str(name), justify="right")
        t2.add_row(*[f"{v:.1f}" for v in pc.values()])
        console.print(t2)


@data_app.command("list")
def data_list() -> None:
    """List datasets, whether they are installed, and their sizes."""
    from obliviate.data import list_datasets

    t = Table(title="datasets")
    for col in ("name", "installed", "samples", "shape", "classes", "provided by"):
        t.add_column(col)
    for d in list_datasets():
        t.add_row(
            d.name,
            "[green]yes[/]" if d.installed else "[red]no[/]",
            str(d.n_samples if d.n_samples is not None else "?"),
            "×".join(str(s) for s in d.shape) if d.shape else "?",
            str(d.num_classes if d.num_classes is not None else "?"),
            d.install_hint,
        )
    console.print(t)


@app.command("models")
def models_list() -> None:
    """List registered model architectures."""
    from obliviate.models import MODELS

    t = Table(title="models")
    t.add_column("name")
    t.add_column("description")
    for name in MODELS.names():
        t.add_row(name, str(MODELS.meta(name).get("description", "")))
    console.print(t)


@app.command()
def train(
    out: Annotated[Path, typer.Option(help="Checkpoint folder to write.")],
    dataset: Annotated[
        str, typer.Option(help="Dataset name (see `obliviate data list`).")
    ] = "mnist",
    model: Annotated[str, typer.Option(help="Model name (see `obliviate models`).")] = "small_cnn",
    data_root: Annotated[
        str | None, typer.Option(help="Folder of a user-supplied dataset (cifar10, cifar100).")
    ] = None,
    classes: Annotated[
        str | None,
        typer.Option(help="Keep only these classes (names or indices, comma separated)."),
    ] = None,
    test: Annotated[str, typer.Option(help="'official', a count, or a fraction.")] = "official",
    val: Annotated[str, typer.Option(help="Validation size: count or fraction.")] = "0",
    reserve: Annotated[str, typer.Option(help="Spare pool held out of training (healing).")] = "0",
    train_size: Annotated[
        str | None, typer.Option("--train-size", help="Training-set size (default: the rest).")
    ] = None,
    train_per_class: Annotated[int | None, typer.Option(help="Training samples per class.")] = None,
    split_seed: Annotated[int, typer.Option(help="Seed of the split.")] = 0,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 5,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 0.05,
    batch_size: Annotated[int, typer.Option(help="Mini-batch size.")] = 128,
    seed: Annotated[int, typer.Option(help="Training seed (init, order, augmentation).")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Any TrainConfig field as key=value (repeatable)."),
    ] = None,
    sisa_shards: Annotated[
        int,
        typer.Option(help="Train a SISA ensemble of this many shards instead (0: one model)."),
    ] = 0,
    sisa_slices: Annotated[int, typer.Option(help="SISA slices per shard.")] = 5,
    sisa_aggregation: Annotated[
        str, typer.Option(help="SISA aggregation: vote or mean (softmax).")
    ] = "vote",
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Train a model (or, with --sisa-shards, a SISA ensemble) on a seeded split and save it."""
    from obliviate.config import build_config, parse_set_options
    from obliviate.data import load_dataset, make_split
    from obliviate.train import TrainConfig, train_model

    try:
        kw = {"root": data_root} if data_root else {}
        ds = load_dataset(dataset, **kw)
        cls = _parse_classes(classes)
        if cls:
            ds = ds.select_classes(cls)
        t: str | int | float = test if test == "official" else _size(test)  # type: ignore[assignment]
        split = make_split(
            ds,
            seed=split_seed,
            test=t,
            val=_size(val) or 0,
            reserve=_size(reserve) or 0,
            train=_size(train_size),
            train_per_class=train_per_class,
        )
        overrides: dict[str, Any] = dict(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
        overrides.update(parse_set_options(set_))
        cfg = build_config(TrainConfig, overrides)
        console.print(f"{ds!r}; split {split.sizes()} (hash {split.hash[:12]})")
        if sisa_shards > 0:
            _train_sisa(
                ds,
                split,
                model,
                cfg,
                out,
                sisa_shards,
                sisa_slices,
                sisa_aggregation,
                device,
                quiet,
            )
            return
        tm = train_model(ds, split, model, cfg, device=device, show_progress=not quiet)
        tm.save(str(out))
    except ObliviateError as e:
        _fail(e)
    print_metrics(f"{model} on {dataset} ({tm.history.seconds:.1f} s)", tm.metrics)
    console.print(f"checkpoint written to [bold]{out}[/]")


SISA_SPLIT = "split.json"


def _train_sisa(ds, split, model, cfg, out, shards, slices, aggregation, device, quiet) -> None:
    """Train and save a SISA artifact (the ensemble folder plus the split it was trained on)."""
    from obliviate.train import evaluate
    from obliviate.unlearn.sisa import save_sisa, train_sisa_model

    ens = train_sisa_model(
        ds,
        split,
        model,
        cfg,
        shards=shards,
        slices=slices,
        aggregation=aggregation,
        device=device,
        keep_data=False,
        show_progress=not quiet,
    )
    save_sisa(ens, out)
    split.save(out / SISA_SPLIT)
    m = evaluate(ens, ds, split, parts=("train", "test"), device=device)
    print_metrics(f"SISA {shards} shards × {slices} slices of {model}", m)
    console.print(f"SISA artifact written to [bold]{out}[/]")


def _load_sisa_artifact(path: Path, device: str):
    """(ensemble, dataset, split) of a SISA folder written by ``obliviate train --sisa-shards``."""
    import json

    from obliviate.checkpoint import dataset_for
    from obliviate.data import Split
    from obliviate.errors import CheckpointError
    from obliviate.unlearn.sisa import load_sisa

    meta = json.loads((path / "sisa.json").read_text()).get("meta", {})
    if "dataset" not in meta:
        raise CheckpointError(f"SISA artifact {path} records no dataset; use the library API")
    ds = dataset_for(meta)
    split = Split.load(path / SISA_SPLIT)
    if split.hash != meta.get("split_hash"):
        raise CheckpointError(
            f"SISA artifact {path}: {SISA_SPLIT} (hash {split.hash[:12]}) is not the split the "
            f"ensemble was trained on ({str(meta.get('split_hash'))[:12]})"
        )
    return load_sisa(path, dataset=ds, device=device), ds, split


def _unlearn_sisa(u, model: Path, request: Path, out: Path, seed: int, device: str) -> None:
    from obliviate.data import ForgetRequest
    from obliviate.train import evaluate
    from obliviate.unlearn import make_task
    from obliviate.unlearn.sisa import save_sisa

    ens, ds, split = _load_sisa_artifact(model, device)
    req = ForgetRequest.load(request).validate(split)
    task = make_task(ds, split, req, seed=seed, device=device)
    res = u.unlearn(ens, task)
    save_sisa(res.model, out)
    split.save(out / SISA_SPLIT)
    m = evaluate(res.model, ds, split, parts=("test",), request=req, device=device)
    print_metrics(f"sisa: unlearned {len(req)} samples in {res.stats['seconds']:.2f} s", m)
    saved = res.stats["cost_saved_vs_full_sisa"]
    console.print(
        f"shards retrained: {res.stats['shards_retrained']}/{ens.num_shards}; "
        f"{100 * saved:.0f} % of SISA retraining cost saved"
    )
    console.print(f"unlearned SISA artifact written to [bold]{out}[/]")


@app.command()
def retrain(
    model: Annotated[Path, typer.Option(help="Checkpoint of the original model.")],
    request: Annotated[Path, typer.Option(help='Forget request JSON: {"ids": [...]}.')],
    out: Annotated[Path, typer.Option(help="Checkpoint folder for the gold model.")],
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Retrain on train \\ request with the original's exact recipe (the gold model)."""
    from obliviate.data import ForgetRequest
    from obliviate.train import retrain as _retrain

    try:
        req = ForgetRequest.load(request)
        tm = _retrain(str(model), req, device=device, show_progress=not quiet)
        tm.save(str(out), kind="gold", parent=str(model))
    except ObliviateError as e:
        _fail(e)
    print_metrics(
        f"gold retrain without {len(req)} samples ({tm.history.seconds:.1f} s)", tm.metrics
    )
    console.print(f"gold checkpoint written to [bold]{out}[/]")


@app.command("eval")
def eval_(
    model: Annotated[Path, typer.Option(help="Checkpoint folder.")],
    request: Annotated[
        Path | None, typer.Option(help="Forget request: adds forget/retain accuracy.")
    ] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write metrics here.")
    ] = None,
) -> None:
    """Accuracy per split part and per class of a checkpoint."""
    from obliviate._io import atomic_write_json
    from obliviate.checkpoint import dataset_for, load_checkpoint
    from obliviate.data import ForgetRequest
    from obliviate.train import evaluate

    try:
        ck = load_checkpoint(model, device=device)
        ds = dataset_for(ck)
        req = ForgetRequest.load(request).validate(ck.split) if request else None
        parts = [p for p, n in ck.split.sizes().items() if n > 0]
        m = evaluate(ck.model, ds, ck.split, parts=parts, request=req, device=device)
    except ObliviateError as e:
        _fail(e)
    print_metrics(f"{model}", m)
    if json_out:
        atomic_write_json(json_out, m)


@app.command("audit")
def audit_(
    unlearned: Annotated[Path, typer.Option(help="Checkpoint of the unlearned model.")],
    gold: Annotated[
        Path | None, typer.Option(help="Checkpoint of the gold retrain (needed for gaps, r_τ).")
    ] = None,
    original: Annotated[
        Path | None,
        typer.Option(help="Checkpoint of the original (adds its column; ranks classes)."),
    ] = None,
    request: Annotated[
        Path | None,
        typer.Option(help="Forget request JSON (default: the request recorded in the gold model)."),
    ] = None,
    tau: Annotated[
        list[float] | None, typer.Option("--tau", help="Perturbation size τ (repeatable).")
    ] = None,
    perturbation: Annotated[
        str, typer.Option(help="r_τ perturbation: gaussian, uniform, fgsm or pgd.")
    ] = "gaussian",
    c: Annotated[
        int | None, typer.Option(help="Perturbations per forget sample (default 100; 20 for pgd).")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="PGD steps (pgd only; default 10).")] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            help="Only these metrics (repeatable). relearn_time and lira (4 OUT shadows, "
            "gold's recipe) run only when named.",
        ),
    ] = None,
    residual_max_samples: Annotated[
        int | None, typer.Option(help="Use at most this many forget samples for r_τ.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the MIA sample and the perturbations.")] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report here.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
) -> None:
    """Audit an unlearned model against the gold retrain: accuracy, UA, MIAs, Avg. Gap, r_τ, ..."""
    import torch

    from obliviate.audit import audit as run_audit
    from obliviate.checkpoint import dataset_for, load_checkpoint
    from obliviate.data import ForgetRequest
    from obliviate.errors import CheckpointError, RequestError

    def seconds(meta: dict[str, Any]) -> float | None:
        """Step time recorded in a checkpoint: `obliviate unlearn` (unlearn.stats), or training."""
        u = meta.get("unlearn") if isinstance(meta.get("unlearn"), dict) else {}
        for d in (u.get("stats"), u, meta.get("stats"), meta.get("history")):
            if isinstance(d, dict) and isinstance(d.get("seconds"), int | float):
                return float(d["seconds"])
        return None

    try:
        paths = {"unlearned": unlearned, "gold": gold, "original": original}
        cks = {k: load_checkpoint(p, device=device) for k, p in paths.items() if p is not None}
        ref = cks["unlearned"].split.hash
        bad = {k: ck.split.hash for k, ck in cks.items() if ck.split.hash != ref}
        if bad:
            listed = ", ".join(f"{k} {paths[k]} has split {h[:12]}" for k, h in bad.items())
            raise CheckpointError(
                f"checkpoints were trained on different splits: unlearned {unlearned} has split "
                f"{ref[:12]}, but {listed}; an audit compares models on one split"
            )
        if request is not None:
            req = ForgetRequest.load(request)
        else:
            rec = next((ck.request for ck in cks.values() if ck.request is not None), None)
            if rec is None:
                raise RequestError(
                    "no --request given and no checkpoint records one; pass --request R.json"
                )
            req = rec
        g_req = cks["gold"].request if "gold" in cks else None
        if g_req is not None and g_req.hash != req.hash:
            raise RequestError(
                f"gold {gold} was retrained without a different request ({len(g_req)} ids) than "
                f"the one audited ({len(req)} ids); retrain gold on this request"
            )
        ck_u = cks["unlearned"]
        ds = dataset_for(ck_u)
        timings = {}
        for step, key in (("unlearn", "unlearned"), ("gold", "gold"), ("original", "original")):
            s = seconds(cks[key].meta) if key in cks else None
            if s is not None:
                timings[step] = s
        shadow_fn = None
        recipe = cks.get("gold", ck_u).meta
        if metric and "lira" in metric and recipe.get("model") and recipe.get("train_config"):
            from obliviate.models import create_model
            from obliviate.train import TrainConfig, fit

            def shadow_fn(x: Any, y: Any, seed: int) -> Any:  # the gold model's own recipe
                cfg = TrainConfig(**{**recipe["train_config"], "seed": seed})
                torch.manual_seed(seed)
                net = create_model(recipe["model"]["name"], **recipe["model"]["kwargs"])
                fit(net, x, y, cfg, device=device, show_progress=False)
                return net

        report = run_audit(
            ck_u.model,
            cks["gold"].model if "gold" in cks else None,
            cks["original"].model if "original" in cks else None,
            dataset=ds,
            split=ck_u.split,
            request=req,
            taus=tuple(tau) if tau else (0.03,),
            perturbation=perturbation,
            c=c,
            metrics=metric or None,
            seed=seed,
            device=device,
            residual_max_samples=residual_max_samples,
            timings=timings or None,
            attack_kw={"steps": steps} if steps is not None else None,
            shadow_train_fn=shadow_fn,
        )
        if json_out:
            report.save(json_out)
    except ObliviateError as e:
        _fail(e)
    console.print(report)
    if json_out:
        console.print(f"report written to [bold]{json_out}[/]")


def _config_defaults(name: str) -> str:
    from obliviate.unlearn import create_unlearner

    return ", ".join(f"{k}={v}" for k, v in create_unlearner(name).get_params().items())


@app.command("methods")
def methods_list(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show every option's help.")
    ] = False,
) -> None:
    """List unlearning methods with their tags, paper and default hyper-parameters."""
    from obliviate.config import config_help
    from obliviate.unlearn import UNLEARNERS

    t = Table(title="unlearning methods")
    for col in ("name", "tags", "paper", "defaults"):
        t.add_column(col, overflow="fold")
    for name in UNLEARNERS.names():
        cls = UNLEARNERS.get(name)
        t.add_row(name, ", ".join(sorted(cls.tags)), cls.paper, _config_defaults(name))
    console.print(t)
    if verbose:
        for name in UNLEARNERS.names():
            h = Table(title=name)
            for col in ("option", "type", "default", "help"):
                h.add_column(col, overflow="fold")
            for f, typ, default, help_ in config_help(UNLEARNERS.get(name).Config):
                h.add_row(f, typ, str(default), help_)
            console.print(h)


def _unlearning_inputs(model: Path, request: Path, seed: int, device: str):
    from obliviate.checkpoint import dataset_for, load_checkpoint
    from obliviate.data import ForgetRequest
    from obliviate.unlearn import make_task

    ck = load_checkpoint(model, device=device)
    ds = dataset_for(ck)
    req = ForgetRequest.load(request).validate(ck.split)
    task = make_task(
        ds, ck.split, req, seed=seed, device=device, train_config=ck.meta.get("train_config")
    )
    return ck, ds, req, task


@app.command()
def unlearn(
    method: Annotated[str, typer.Option(help="Method name (see `obliviate methods`).")],
    model: Annotated[Path, typer.Option(help="Checkpoint of the trained model.")],
    request: Annotated[Path, typer.Option(help='Forget request JSON: {"ids": [...]}.')],
    out: Annotated[Path, typer.Option(help="Checkpoint folder for the unlearned model.")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="A method option as key=value (repeatable)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the method's random choices.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
) -> None:
    """Unlearn a request from a checkpoint with one method and save the new model."""
    from obliviate.checkpoint import save_checkpoint
    from obliviate.config import parse_set_options
    from obliviate.train import evaluate
    from obliviate.unlearn import create_unlearner

    try:
        u = create_unlearner(method, **parse_set_options(set_))
        if (model / "sisa.json").exists() or "needs_ensemble" in u.tags:
            if "needs_ensemble" not in u.tags:
                raise ConfigError(
                    f"{model} is a SISA ensemble; only ensemble methods (sisa) unlearn it"
                )
            if not (model / "sisa.json").exists():
                raise ConfigError(
                    f"method {method!r} needs a SISA artifact (train one with `obliviate train "
                    f"--sisa-shards S`); {model} is not one"
                )
            _unlearn_sisa(u, model, request, out, seed, device)
            return
        ck, ds, req, task = _unlearning_inputs(model, request, seed, device)
        res = u.unlearn(ck.model, task)
        m = evaluate(res.model, ds, ck.split, parts=("test",), request=req, device=device)
        save_checkpoint(
            out,
            res.model,
            split=ck.split,
            dataset=ds,
            train_config=ck.meta.get("train_config"),
            metrics=m,
            request=req,
            parent=str(model),
            kind="unlearned",
            extra={
                "unlearn": {
                    "method": method,
                    "params": u.get_params(),
                    "seed": seed,
                    "stats": res.stats,
                }
            },
        )
    except ObliviateError as e:
        _fail(e)
    print_metrics(f"{method}: unlearned {len(req)} samples in {res.stats['seconds']:.2f} s", m)
    console.print(f"unlearned checkpoint written to [bold]{out}[/]")


@app.command()
def tune(
    method: Annotated[str, typer.Option(help="Method name (see `obliviate methods`).")],
    model: Annotated[Path, typer.Option(help="Checkpoint of the trained model.")],
    gold: Annotated[Path, typer.Option(help="Gold retrain checkpoint for the same request.")],
    request: Annotated[Path, typer.Option(help="Forget request JSON.")],
    seed: Annotated[int, typer.Option(help="Tuning seed (report results on other seeds).")] = 0,
    strategy: Annotated[str, typer.Option(help="grid or random.")] = "grid",
    trials: Annotated[int, typer.Option(help="Max trials (0: the whole grid).")] = 0,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="A fixed method option key=value (repeatable)."),
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the trials here.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
) -> None:
    """Pick a method's hyper-parameters by Avg. Gap to the gold model on a tuning seed."""
    import dataclasses

    from obliviate._io import atomic_write_json
    from obliviate.checkpoint import load_checkpoint
    from obliviate.config import parse_set_options
    from obliviate.unlearn import TensorSet
    from obliviate.unlearn.tune import core_metrics, gap_scorer
    from obliviate.unlearn.tune import tune as _tune

    try:
        ck, ds, req, task = _unlearning_inputs(model, request, seed, device)
        g = load_checkpoint(gold, device=device, expect_split_hash=ck.split.hash)
        if g.request is None or sorted(g.request.ids) != sorted(req.ids):
            raise ObliviateError(f"gold checkpoint {gold} was not retrained without this request")
        xt, yt = ds.tensors(ck.split.test)
        test = TensorSet(xt, yt, ck.split.test)
        gm = core_metrics(g.model, task, test, seed=seed, device=device)
        res = _tune(
            method,
            ck.model,
            task,
            gap_scorer(gm, task, test, seed, device),
            strategy=strategy,
            n_trials=trials,
            seed=seed,
            base=parse_set_options(set_),
        )
    except ObliviateError as e:
        _fail(e)
    t = Table(title=f"tuning {method} by Avg. Gap to gold (seed {seed})")
    for col in ("params", "Avg. Gap", "retain", "UA", "test", "MIA", "seconds"):
        t.add_column(col, justify="right")
    for tr in sorted(res.trials, key=lambda x: x.score):
        mm = tr.metrics
        t.add_row(
            ", ".join(f"{k}={v}" for k, v in tr.params.items()),
            f"{tr.score:.2f}",
            *(
                f"{mm.get(k, float('nan')):.2f}"
                for k in ("acc/retain", "ua", "acc/test", "mia_efficacy")
            ),
            f"{tr.seconds:.1f}",
        )
    console.print(t)
    console.print(f"best: {res.best_params} (Avg. Gap {res.best_score:.2f})")
    if json_out:
        atomic_write_json(json_out, dataclasses.asdict(res))


def _register_verb_groups() -> None:
    """Verbs that live in their own modules: attacks, healing, scenarios and suites."""
    from obliviate.cli_attacks import register as attacks
    from obliviate.cli_heal import register as heal
    from obliviate.cli_scenarios import register as scenarios

    for register in (attacks, heal, scenarios):
        register(app)


_register_verb_groups()


def main() -> None:  # pragma: no cover - console entry point
    try:
        app()
    except ObliviateError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
