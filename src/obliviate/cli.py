"""``obliviate`` command line: a thin layer over the library (typer + rich).

Each verb parses its options and calls one step of :mod:`obliviate.steps` (or one library call);
the verb groups of ``cli_attacks``, ``cli_heal`` and ``cli_scenarios`` are registered here.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from obliviate import cli_attacks, cli_heal, cli_scenarios
from obliviate._io import atomic_write_json
from obliviate.cli_common import (
    DEVICE_HELP,
    _device_option,
    _fail,
    _out_dir,
    _out_file,
    _parse_classes,
    _seed_option,
    _size,
    app,
    console,
    data_app,
    print_metrics,
)
from obliviate.config import (
    STEPS_MAX,
    build_config,
    check_value,
    config_help,
    config_ranges,
    parse_set_options,
)
from obliviate.data import DATASETS, list_datasets
from obliviate.errors import ConfigError, ObliviateError
from obliviate.models import MODELS
from obliviate.steps import (
    artifact_label,
    audit_step,
    evaluate_step,
    load_artifact,
    load_request,
    prepare_data,
    retrain_step,
    train_title,
    train_to,
    unlearn_step,
)
from obliviate.train import TrainConfig
from obliviate.unlearn import UNLEARNERS, TensorSet, create_unlearner, make_task
from obliviate.unlearn.sisa import AGGREGATIONS
from obliviate.unlearn.tune import TRIALS_MAX, core_metrics, gap_scorer
from obliviate.unlearn.tune import tune as _tune

__all__ = ["app", "console", "main", "print_metrics"]


@data_app.command("list")
def data_list() -> None:
    """List datasets, whether they are installed, and their sizes."""
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
    t = Table(title="models")
    t.add_column("name")
    t.add_column("description")
    for name in MODELS.names():
        t.add_row(name, str(MODELS.meta(name).get("description", "")))
    console.print(t)


#: Most SISA shards or slices per shard ``train`` accepts.
SISA_MAX = 10_000


def _check_train_options(
    dataset: str, model: str, data_root: str | None, train_per_class: int | None, sisa: tuple
) -> None:
    """``train``'s options checked before any data is read: the model and dataset names, a
    ``--data-root`` only for datasets read from a folder, and the counts' ranges."""
    MODELS.get(model)
    loader = DATASETS.get(dataset)
    if data_root is not None and "root" not in inspect.signature(loader).parameters:
        takes = [
            n for n in DATASETS.names() if "root" in inspect.signature(DATASETS.get(n)).parameters
        ]
        raise ConfigError(
            f"--data-root applies only to datasets read from a folder ({', '.join(takes)}), "
            f"not to {dataset!r}"
        )
    check_value("--train-per-class", train_per_class, int, ge=1, optional=True)
    shards, slices, aggregation = sisa
    check_value("--sisa-shards", shards, int, ge=0, le=SISA_MAX)
    check_value("--sisa-slices", slices, int, ge=1, le=SISA_MAX)
    check_value("--sisa-aggregation", aggregation, str, choices=AGGREGATIONS)


@app.command()
def train(
    out: Annotated[Path, typer.Option(help="Checkpoint folder to write.", callback=_out_dir)],
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
    split_seed: Annotated[int, typer.Option(help="Seed of the split.", callback=_seed_option)] = 0,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 5,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 0.05,
    batch_size: Annotated[int, typer.Option(help="Mini-batch size.")] = 128,
    seed: Annotated[
        int, typer.Option(help="Training seed (init, order, augmentation).", callback=_seed_option)
    ] = 0,
    device: Annotated[str, typer.Option(help=DEVICE_HELP, callback=_device_option)] = "cpu",
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
        str, typer.Option(help="SISA aggregation: vote or mean_softmax.")
    ] = "vote",
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Train a model (or, with --sisa-shards, a SISA ensemble) on a seeded split and save it."""
    try:
        sisa = (sisa_shards, sisa_slices, sisa_aggregation)
        _check_train_options(dataset, model, data_root, train_per_class, sisa)
        t: str | int | float = test if test == "official" else _size(test, "--test")  # type: ignore[assignment]
        ds, split = prepare_data(
            dataset,
            root=data_root,
            classes=_parse_classes(classes),
            split_seed=split_seed,
            test=t,
            val=_size(val, "--val") or 0,
            reserve=_size(reserve, "--reserve") or 0,
            train=_size(train_size, "--train-size"),
            train_per_class=train_per_class,
        )
        overrides: dict[str, Any] = dict(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
        overrides.update(parse_set_options(set_))
        cfg = build_config(TrainConfig, overrides)
        console.print(f"{ds!r}; split {split.sizes()} (hash {split.hash[:12]})")
        fmt, options = "checkpoint", {}
        if sisa_shards > 0:  # the --sisa-* options select the SISA artifact format
            fmt = "sisa"
            options = dict(shards=sisa_shards, slices=sisa_slices, aggregation=sisa_aggregation)
        trained = train_to(
            out, ds, split, model, cfg, artifact_format=fmt, options=options, device=device,
            show_progress=not quiet,
        )  # fmt: skip
    except ObliviateError as e:
        _fail(e)
    print_metrics(train_title(trained, model, dataset, options), trained.metrics)
    console.print(f"{artifact_label(trained.model)} written to [bold]{out}[/]")


@app.command()
def retrain(
    model: Annotated[Path, typer.Option(help="Checkpoint of the original model.")],
    request: Annotated[Path, typer.Option(help='Forget request JSON: {"ids": [...]}.')],
    out: Annotated[
        Path, typer.Option(help="Checkpoint folder for the gold model.", callback=_out_dir)
    ],
    device: Annotated[str, typer.Option(help=DEVICE_HELP, callback=_device_option)] = "cpu",
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Retrain on train \\ request with the original's exact recipe (the gold model)."""
    try:
        tm = retrain_step(model, request, out=out, device=device, show_progress=not quiet)
    except ObliviateError as e:
        _fail(e)
    assert tm.request is not None
    print_metrics(
        f"gold retrain without {len(tm.request)} samples ({tm.seconds:.1f} s)", tm.metrics
    )
    console.print(f"gold checkpoint written to [bold]{out}[/]")


@app.command("eval")
def eval_(
    model: Annotated[Path, typer.Option(help="Checkpoint folder.")],
    request: Annotated[
        Path | None, typer.Option(help="Forget request: adds forget/retain accuracy.")
    ] = None,
    device: Annotated[str, typer.Option(help=DEVICE_HELP, callback=_device_option)] = "cpu",
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write metrics here.", callback=_out_file)
    ] = None,
) -> None:
    """Accuracy per split part and per class of a checkpoint."""
    try:
        m = evaluate_step(model, request, device=device)
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
    seed: Annotated[
        int,
        typer.Option(help="Seed of the MIA sample and the perturbations.", callback=_seed_option),
    ] = 0,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the report here.", callback=_out_file)
    ] = None,
    device: Annotated[str, typer.Option(help=DEVICE_HELP, callback=_device_option)] = "cpu",
) -> None:
    """Audit an unlearned model against the gold retrain: accuracy, UA, MIAs, Avg. Gap, r_τ, ..."""
    try:
        check_value("--steps", steps, int, ge=1, le=STEPS_MAX, optional=True)
        report = audit_step(
            unlearned,
            gold,
            original,
            request=request,
            seed=seed,
            device=device,
            out=json_out,
            taus=tuple(tau) if tau else (0.03,),
            perturbation=perturbation,
            c=c,
            metrics=metric or None,
            residual_max_samples=residual_max_samples,
            attack_kw={"steps": steps} if steps is not None else None,
        )
    except ObliviateError as e:
        _fail(e)
    console.print(report)
    if json_out:
        console.print(f"report written to [bold]{json_out}[/]")


def _config_defaults(name: str) -> str:
    return ", ".join(f"{k}={v}" for k, v in create_unlearner(name).get_params().items())


@app.command("methods")
def methods_list(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show every option's help.")
    ] = False,
) -> None:
    """List unlearning methods with their tags, paper and default hyper-parameters."""
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
            for col in ("option", "type", "range", "default", "help"):
                h.add_column(col, overflow="fold")
            cfg_cls = UNLEARNERS.get(name).Config
            ranges = config_ranges(cfg_cls)
            for f, typ, default, help_ in config_help(cfg_cls):
                h.add_row(f, typ, ranges.get(f, ""), str(default), help_)
            console.print(h)


@app.command()
def unlearn(
    method: Annotated[str, typer.Option(help="Method name (see `obliviate methods`).")],
    model: Annotated[Path, typer.Option(help="Checkpoint of the trained model.")],
    request: Annotated[Path, typer.Option(help='Forget request JSON: {"ids": [...]}.')],
    out: Annotated[
        Path, typer.Option(help="Checkpoint folder for the unlearned model.", callback=_out_dir)
    ],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="A method option as key=value (repeatable)."),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed of the method's random choices.", callback=_seed_option)
    ] = 0,
    device: Annotated[str, typer.Option(help=DEVICE_HELP, callback=_device_option)] = "cpu",
) -> None:
    """Unlearn a request from a checkpoint with one method and save the new model."""
    try:
        res = unlearn_step(
            method,
            model,
            request,
            options=parse_set_options(set_),
            seed=seed,
            device=device,
            out=out,
        )
    except ObliviateError as e:
        _fail(e)
    secs = res.stats["seconds"]
    print_metrics(f"{method}: unlearned {len(res.request)} samples in {secs:.2f} s", res.metrics)
    for line in res.notes:
        console.print(line)
    console.print(f"unlearned {res.label} written to [bold]{out}[/]")


@app.command()
def tune(
    method: Annotated[str, typer.Option(help="Method name (see `obliviate methods`).")],
    model: Annotated[Path, typer.Option(help="Checkpoint of the trained model.")],
    gold: Annotated[Path, typer.Option(help="Gold retrain checkpoint for the same request.")],
    request: Annotated[Path, typer.Option(help="Forget request JSON.")],
    seed: Annotated[
        int,
        typer.Option(help="Tuning seed (report results on other seeds).", callback=_seed_option),
    ] = 0,
    strategy: Annotated[str, typer.Option(help="grid or random.")] = "grid",
    trials: Annotated[int, typer.Option(help="Max trials (0: the whole grid).")] = 0,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="A fixed method option key=value (repeatable)."),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the trials here.", callback=_out_file)
    ] = None,
    device: Annotated[str, typer.Option(help=DEVICE_HELP, callback=_device_option)] = "cpu",
) -> None:
    """Pick a method's hyper-parameters by Avg. Gap to the gold model on a tuning seed."""
    try:
        check_value("--trials", trials, int, ge=0, le=TRIALS_MAX)
        base = parse_set_options(set_)
        build_config(UNLEARNERS.get(method).Config, base)  # a bad --set is refused before loading
        ck = load_artifact(model, device)
        ds = ck.dataset
        req = load_request(request, ck.split)
        task = make_task(
            ds, ck.split, req, seed=seed, device=device, train_config=ck.meta.get("train_config")
        )
        g = load_artifact(gold, device, split=ck.split)
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
            base=base,
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


for _register in (cli_attacks.register, cli_heal.register, cli_scenarios.register):
    _register(app)  # verb groups in their own modules: attacks, healing, scenarios and suites


def main() -> None:  # pragma: no cover - console entry point
    try:
        app()
    except ObliviateError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
