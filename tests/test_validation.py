"""Bad values are refused at the boundary (issue 20): one validation layer for config fields,
devices parsed once, one rule for seeds, sizes that are counts or fractions. Each example of the
issue is a regression test, through the Python API and the CLI (exit status 2, one line naming
the option, no traceback, nothing written)."""

from __future__ import annotations

import json
import math
import textwrap
from dataclasses import dataclass

import pytest
from typer.testing import CliRunner

from obliviate.attacks.selection import resolve_budget
from obliviate.audit import AuditConfig
from obliviate.cli import app
from obliviate.config import (
    EPOCHS_MAX,
    SEED_MAX,
    STEPS_MAX,
    build_config,
    check_seed,
    check_seeds,
    opt,
    validate_config,
)
from obliviate.data import load_dataset, make_split
from obliviate.defenses.healing import HealConfig
from obliviate.errors import ConfigError, ObliviateError, SplitError
from obliviate.scenarios import ScenarioError, scenario_from_yaml
from obliviate.train import TrainConfig
from obliviate.unlearn import UNLEARNERS, create_unlearner
from obliviate.unlearn.tune import make_sampler
from obliviate.utils import parse_device, resolve_device

runner = CliRunner()
CUDA = parse_device("auto").type == "cuda"


def cli(*args: str):
    return runner.invoke(app, list(args))


def refused(r, *needles: str) -> None:
    """Exit status 2, no traceback, the error on one line that names every needle."""
    assert r.exit_code == 2, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, r.output
    for n in needles:
        assert n in lines[0], (n, lines[0])


# --------------------------------------------------------------------------- the layer itself


def test_opt_declares_range_once_and_subclasses_inherit_it():
    @dataclass
    class Base:
        lr: float = opt(0.1, "rate", gt=0, le=1)
        n: int = opt(1, "count", ge=1)
        name: str | None = opt(None, "optional")

        def __post_init__(self) -> None:
            validate_config(self)

    @dataclass
    class Child(Base):
        lr: float = opt(0.5, "re-declared default, same range")

    with pytest.raises(ConfigError, match=r"^lr must be a finite number in \(0, 1\], got 2\.0$"):
        Child(lr=2.0)
    with pytest.raises(ConfigError, match=r"n must be an integer >= 1, got 2\.5"):
        Base(n=2.5)
    with pytest.raises(ConfigError, match="n must be an integer >= 1, got True"):
        Base(n=True)
    assert Base(n=3.0).n == 3 and isinstance(Base(n=3.0).n, int)
    assert Base(name=None).name is None


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("lr", "nan", "lr must be a finite number in (0, 10], got nan"),
        ("lr", "inf", "lr must be a finite number"),
        ("lr", "1e308", "got 1e+308"),
        ("momentum", "nan", "momentum must be a finite number in [0, 1)"),
        ("weight_decay", -1, "weight_decay must be a finite number >= 0, got -1"),
        ("label_smoothing", 2, "label_smoothing must be a finite number in [0, 1], got 2"),
        ("batch_size", 0, "batch_size must be an integer >= 1, got 0"),
        ("grad_clip", "nan", "grad_clip must be a finite number >= 0, got nan"),
        ("warmup_epochs", -1, "warmup_epochs must be a finite number in [0, 10000]"),
        ("max_steps", -1, "max_steps must be an integer in [0, 1e7], got -1"),
        ("max_steps", STEPS_MAX + 1, "max_steps must be an integer in [0, 1e7]"),
        ("eval_every", -1, "eval_every must be an integer >= 0, got -1"),
        ("epochs", -1, "epochs must be an integer in [0, 10000], got -1"),
        ("epochs", 1e12, "epochs must be an integer in [0, 10000], got 1000000000000"),
        ("epochs", 1.0e300, "epochs must be an integer in [0, 10000], got 1.000e+300"),
        ("seed", -1, "seed must be an integer in [0, 2^63 - 1], got -1"),
        ("seed", 10**20, "seed must be an integer in [0, 2^63 - 1], got 1.000e+20"),
    ],
)
def test_train_config_refuses_out_of_range(key, value, words):
    with pytest.raises(ConfigError) as ei:
        build_config(TrainConfig, {key: value})
    assert words in str(ei.value)
    with pytest.raises(ConfigError):  # the Python API: direct construction, too
        TrainConfig(**{key: float(value) if isinstance(value, str) else value})


def test_fit_revalidates_a_config_changed_after_construction():
    from obliviate.train import fit

    cfg = TrainConfig()
    cfg.lr = math.nan
    with pytest.raises(ConfigError, match="lr must be a finite number"):
        fit(None, None, None, cfg)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("method", "key", "value", "words"),
    [
        ("finetune", "epochs", -1, "finetune: epochs must be an integer in [0, 10000], got -1"),
        ("finetune", "lr", math.nan, "finetune: lr must be a finite number in (0, 10], got nan"),
        ("grad_ascent", "grad_clip", math.nan, "grad_clip must be a finite number >= 0"),
        ("finetune", "max_steps", -1, "max_steps must be an integer in [0, 1e7]"),
        ("finetune", "eval_every", -1, "eval_every must be an integer >= 1"),
        ("ssd", "alpha", math.nan, "ssd: alpha must be a finite number > 0, got nan"),
        ("rurk", "tau", 2.0, "tau must be a finite number in [0, 1]"),
        ("roka", "momentum", math.nan, "roka: momentum must be a finite number in [0, 1)"),
        ("scrub", "epochs", 1e12, "epochs must be an integer in [0, 10000]"),
        ("retrain", "seed", -2, "seed must be an integer in [-1, 2^63 - 1], got -2"),
        ("influence", "cg_tol", math.inf, "cg_tol must be a finite number >= 0, got inf"),
        ("fisher", "alpha", -1.0, "fisher: alpha must be a finite number >= 0"),
        ("certified_removal", "delta", 1.0, "delta must be a finite number in (0, 1)"),
    ],
)
def test_unlearner_configs_refuse_out_of_range(method, key, value, words):
    with pytest.raises(ConfigError) as ei:
        create_unlearner(method, **{key: value})
    assert words in str(ei.value)


def test_every_default_config_is_valid():
    for name in UNLEARNERS.names():
        validate_config(create_unlearner(name).config)
    validate_config(TrainConfig())
    validate_config(HealConfig())


def test_heal_config_ranges():
    with pytest.raises(ConfigError, match="lr must be a finite number in"):
        HealConfig(lr=math.nan)
    with pytest.raises(ConfigError, match=r"epochs must be an integer in \[1, 10000\]"):
        HealConfig(epochs=EPOCHS_MAX + 1)


# --------------------------------------------------------------------------- seeds and sizes


@pytest.mark.parametrize("bad", [-1, 2**63, 10**20, 1.5, True, "3"])
def test_one_rule_for_seeds(bad):
    with pytest.raises(ConfigError, match=r"seed must be an integer in \[0, 2\^63 - 1\]"):
        check_seed(bad)
    assert check_seed(SEED_MAX) == SEED_MAX and check_seed(0) == 0


def test_seed_lists_are_bounded():
    with pytest.raises(ConfigError, match="at most 1000"):
        check_seeds(list(range(1001)))
    with pytest.raises(ConfigError, match=r"seeds\[1\] must be an integer"):
        check_seeds([0, -1])


def test_sizes_refuse_ambiguous_floats_and_empty_classes():
    ds = load_dataset("synthetic")
    with pytest.raises(SplitError, match="test must be an integer count or a fraction in"):
        make_split(ds, test=2.0)
    with pytest.raises(SplitError, match="no training sample of class"):
        make_split(ds, test=0.2, val=0.999)
    with pytest.raises(ConfigError, match="split seed must be an integer"):
        make_split(ds, seed=-1)
    for b in (1.0, 2.0, math.nan):
        with pytest.raises(ConfigError, match="budget must be an integer count or a fraction"):
            resolve_budget(b, 100)
    assert resolve_budget(0.1, 100) == 10 and resolve_budget(3, 100) == 3


def test_audit_c_and_tune_trials_are_bounded():
    with pytest.raises(ConfigError, match=r"c must be an integer in \[1, 10000\]"):
        AuditConfig(c=10**9)
    with pytest.raises(ConfigError, match="n_trials must be an integer"):
        make_sampler({"lr": [0.1]}, "grid", 0, -1)


# --------------------------------------------------------------------------- devices


@pytest.mark.parametrize("bad", ["tpu", "", "meta", " cpu"])
def test_unknown_device_names_what_is_available(bad):
    with pytest.raises(ConfigError, match=f"unknown device {bad!r}.*available: cpu"):
        parse_device(bad)


@pytest.mark.skipif(CUDA, reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_one_line():
    for dev in ("cuda", "cuda:7"):
        with pytest.raises(ConfigError, match=f"device '{dev}' is not available here: torch has"):
            resolve_device(dev)
    assert parse_device("auto").type == "cpu" and parse_device(None).type == "cpu"


# --------------------------------------------------------------------------- scenario YAML


def _problems(text: str) -> dict[str, tuple[int | None, str]]:
    with pytest.raises(ScenarioError) as ei:
        scenario_from_yaml(textwrap.dedent(text), origin="scn.yaml")
    return {key: (ln, msg) for _, ln, key, msg in ei.value.problems}


def test_scenario_method_config_validated_at_load_with_its_line():
    got = _problems(
        """\
        name: t
        dataset: {name: digits}
        training:
          epochs: 1.0e+300
        requests: {ids: [1, 2]}
        methods:
          - name: finetune
            config: {lr: .nan}
          - name: ssd
            config: {alpha: .nan}
        """
    )
    assert (
        got["training.epochs"][0] == 4 and "epochs must be an integer" in got["training.epochs"][1]
    )
    assert got["methods[0].config.lr"][0] == 8
    assert "lr must be a finite number" in got["methods[0].config.lr"][1]
    assert got["methods[1].config.alpha"][0] == 10
    got = _problems("name: t\ndataset: {name: digits}\nrequests: {ids: [1]}\nseeds: [-1]\n")
    assert any("seeds[0] must be an integer" in m for _, m in got.values()), got


def test_scenario_seed_list_too_long():
    seeds = ", ".join(str(i) for i in range(1001))
    got = _problems(
        f"name: t\ndataset: {{name: digits}}\nrequests: {{ids: [1]}}\nseeds: [{seeds}]\n"
    )
    assert any("at most 1000" in m for _, m in got.values()), got


# --------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("ck")
    ck = d / "orig"
    r = runner.invoke(
        app,
        ["train", "--out", str(ck), "--dataset", "synthetic", "--test", "0.2", "--epochs", "1"]
        + ["--quiet"],
    )
    assert r.exit_code == 0, r.output
    req = d / "req.json"
    req.write_text(json.dumps({"ids": json.loads((ck / "split.json").read_text())["train"][:4]}))
    return ck, req


TRAIN = ["train", "--dataset", "synthetic", "--test", "0.2", "--epochs", "1", "--quiet"]


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--lr", "nan"], ["lr must be a finite number", "nan"]),
        (["--lr", "inf"], ["lr must be a finite number", "inf"]),
        (["--set", "lr=1e308"], ["lr must be", "1e+308"]),
        (["--set", "momentum=nan"], ["momentum must be"]),
        (["--set", "weight_decay=-1"], ["weight_decay must be", ">= 0"]),
        (["--set", "label_smoothing=2"], ["label_smoothing must be", "[0, 1]"]),
        (["--set", "batch_size=0"], ["batch_size must be an integer >= 1"]),
        (["--set", "grad_clip=nan"], ["grad_clip must be"]),
        (["--set", "warmup_epochs=-1"], ["warmup_epochs must be"]),
        (["--set", "max_steps=-1"], ["max_steps must be"]),
        (["--set", "eval_every=-1"], ["eval_every must be"]),
        (["--set", "epochs=1.0e+300"], ["epochs must be an integer in [0, 10000]"]),
        (["--seed", "-1"], ["--seed must be an integer in [0, 2^63 - 1]"]),
        (["--seed", str(10**20)], ["--seed must be an integer"]),
        (["--split-seed", "-1"], ["--split-seed must be an integer"]),
        (["--test", "2.0"], ["--test must be an integer count or a fraction in (0, 1)"]),
        (["--test", "nan"], ["--test must be"]),
        (["--val", "0.999"], ["no training sample of class"]),
        (["--device", "tpu"], ["--device", "unknown device 'tpu'", "available: cpu"]),
        (["--device", ""], ["--device", "unknown device ''"]),
    ],
)
def test_cli_train_refuses(tmp_path, extra, needles):
    out = tmp_path / "out"
    refused(cli(*TRAIN, "--out", str(out), *extra), *needles)
    assert not out.exists()


@pytest.mark.skipif(CUDA, reason="needs a machine without CUDA")
@pytest.mark.parametrize(
    "verb",
    [
        ["train", "--out", "x"],
        ["unlearn", "--method", "finetune", "--model", "m", "--request", "r", "--out", "o"],
        ["retrain", "--model", "m", "--request", "r", "--out", "o"],
        ["eval", "--model", "m"],
        ["audit", "--unlearned", "u"],
        ["attack", "requests", "--model", "m", "--strategy", "random", "--budget", "3"],
        ["attack", "indirect", "--model", "m", "--victim-class", "0"],
        ["attack", "probe", "--unlearned", "u", "--gold", "g"],
        ["heal", "--unlearned", "u", "--request", "r", "--out", "o2"],
        ["run", "scn.yaml"],
        ["bench", "quick"],
        ["tune", "--method", "finetune", "--model", "m", "--gold", "g", "--request", "r"],
    ],
)
def test_every_verb_parses_its_device_first(verb):
    refused(cli(*verb, "--device", "cuda"), "--device", "not available here", "available: cpu")


def test_cli_seeds_and_sizes(tmp_path, ckpt):
    ck, req = ckpt
    scn = tmp_path / "scn.yaml"
    scn.write_text("name: t\ndataset: {name: synthetic}\nrequests: {ids: [1]}\n")
    db = tmp_path / "res.db"
    refused(cli("run", str(scn), "--results", str(db), "--seeds=-1"), "--seeds[0] must be")
    assert not db.exists()
    many = ",".join(str(i) for i in range(1001))
    refused(cli("run", str(scn), "--results", str(db), "--seeds", many), "at most 1000")
    out = tmp_path / "req.json"
    args = ["attack", "requests", "--model", str(ck), "--strategy", "random", "--out", str(out)]
    refused(cli(*args, "--budget", "1.0"), "--budget must be an integer count or a fraction")
    refused(cli(*args, "--budget", "3", "--seed", "-1"), "--seed must be an integer")
    assert not out.exists()
    r = cli("audit", "--unlearned", str(ck), "--request", str(req), "--c", str(10**9))
    refused(r, "c must be an integer in [1, 10000]")
    r = cli(
        "tune", "--method", "finetune", "--model", str(ck), "--gold", str(ck),
        "--request", str(req), "--trials", "-1",
    )  # fmt: skip
    refused(r, "--trials must be an integer in [0, 100000], got -1")


@pytest.mark.parametrize(
    ("sets", "needles"),
    [
        (["--set", "epochs=-1"], ["finetune: epochs must be an integer in [0, 10000]"]),
        (["--set", "lr=nan"], ["finetune: lr must be a finite number"]),
        (["--set", "epochs=1.0e+300"], ["epochs must be an integer in [0, 10000]"]),
    ],
)
def test_cli_unlearn_refuses_bad_method_options(tmp_path, ckpt, sets, needles):
    ck, req = ckpt
    out = tmp_path / "u"
    r = cli(
        "unlearn", "--method", "finetune", "--model", str(ck), "--request", str(req),
        "--out", str(out), *sets,
    )  # fmt: skip
    refused(r, *needles)
    assert not out.exists()


def test_cli_unlearn_ssd_alpha_nan(tmp_path, ckpt):
    ck, req = ckpt
    r = cli(
        "unlearn", "--method", "ssd", "--model", str(ck), "--request", str(req),
        "--out", str(tmp_path / "u"), "--set", "alpha=nan",
    )  # fmt: skip
    refused(r, "ssd: alpha must be a finite number > 0, got nan")


def test_errors_are_obliviate_errors():
    assert issubclass(ConfigError, ObliviateError)


@pytest.mark.parametrize(
    "opt,value",
    [("--c", "100000000"), ("--steps", "0"), ("--alpha", "nan"), ("--max-samples", "0")],
)
def test_probe_bounds_are_checked_before_anything_loads(tmp_path, opt, value):
    # c copies of every probed sample are held at once: a huge --c must not reach the allocator
    missing = str(tmp_path / "missing")
    r = cli(
        "attack", "probe", "--unlearned", missing, "--gold", missing, "--request", missing,
        opt, value,
    )  # fmt: skip
    refused(r, opt)
