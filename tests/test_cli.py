"""CLI verbs end to end on a small synthetic dataset (the library does the work)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from obliviate.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.mark.parametrize(
    "verb",
    [
        [],
        ["data", "list"],
        ["train"],
        ["retrain"],
        ["eval"],
        ["models"],
        ["run"],
        ["bench"],
        ["report"],
        ["heal"],
        ["attack", "requests"],
        ["attack", "indirect"],
        ["attack", "probe"],
    ],
)
def test_help_on_every_verb(verb):
    r = run(*verb, "--help")
    assert r.exit_code == 0, r.output
    assert "Usage" in r.output


def test_data_list_shows_real_datasets():
    r = run("data", "list")
    assert r.exit_code == 0, r.output
    for name in ("mnist", "fashion_mnist", "animal_mnist", "digits", "cifar10", "synthetic"):
        assert name in r.output


def test_models_lists_registry():
    r = run("models")
    assert r.exit_code == 0
    for name in ("small_cnn", "resnet18", "resnet20", "vit_tiny", "efficientnet_lite0"):
        assert name in r.output


def test_train_eval_retrain_round_trip(tmp_path):
    ck = tmp_path / "orig"
    r = run(
        "train",
        "--dataset",
        "synthetic",
        "--model",
        "small_cnn",
        "--out",
        str(ck),
        "--test",
        "0.2",
        "--reserve",
        "20",
        "--val",
        "20",
        "--epochs",
        "1",
        "--quiet",
        "--set",
        "batch_size=64",
    )
    assert r.exit_code == 0, r.output
    assert "acc/test" in r.output and (ck / "model.safetensors").exists()
    split = json.loads((ck / "split.json").read_text())
    req = tmp_path / "req.json"
    req.write_text(json.dumps({"ids": split["train"][:10]}))
    r = run("eval", "--model", str(ck), "--request", str(req), "--json", str(tmp_path / "m.json"))
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "m.json").read_text())
    assert {"acc/train", "acc/test", "acc/forget", "acc/retain"} <= set(m)
    r = run(
        "retrain",
        "--model",
        str(ck),
        "--request",
        str(req),
        "--out",
        str(tmp_path / "gold"),
        "--quiet",
    )
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "gold" / "meta.json").read_text())
    assert meta["kind"] == "gold" and meta["request"]["ids"] == split["train"][:10]


def test_bad_inputs_give_clear_errors(tmp_path):
    r = run("train", "--dataset", "nope", "--out", str(tmp_path / "x"))
    assert r.exit_code == 2 and "unknown dataset 'nope'" in r.output
    assert not (tmp_path / "x").exists()
    r = run(
        "train",
        "--dataset",
        "synthetic",
        "--model",
        "no_such_net",
        "--out",
        str(tmp_path / "x"),
        "--test",
        "0.2",
    )
    assert r.exit_code == 2 and "unknown model 'no_such_net'" in r.output
    r = run(
        "train",
        "--dataset",
        "synthetic",
        "--out",
        str(tmp_path / "x"),
        "--test",
        "0.2",
        "--set",
        "optimizer=rmsprop",
    )
    assert r.exit_code == 2 and "optimizer" in r.output
    r = run("eval", "--model", str(tmp_path / "missing"))
    assert r.exit_code == 2 and "does not exist" in r.output


def test_methods_unlearn_and_tune(tmp_path):
    r = run("methods")
    assert r.exit_code == 0 and "finetune" in r.output and "needs_retain" in r.output
    ck = tmp_path / "orig"
    r = run(
        "train",
        "--dataset",
        "synthetic",
        "--out",
        str(ck),
        "--test",
        "0.2",
        "--epochs",
        "1",
        "--quiet",
    )
    assert r.exit_code == 0, r.output
    split = json.loads((ck / "split.json").read_text())
    req = tmp_path / "req.json"
    req.write_text(json.dumps({"ids": split["train"][:20]}))
    out = tmp_path / "unl"
    r = run(
        "unlearn",
        "--method",
        "finetune",
        "--model",
        str(ck),
        "--request",
        str(req),
        "--out",
        str(out),
        "--set",
        "epochs=1",
    )
    assert r.exit_code == 0, r.output
    meta = json.loads((out / "meta.json").read_text())
    assert meta["kind"] == "unlearned" and meta["unlearn"]["method"] == "finetune"
    assert meta["unlearn"]["params"]["epochs"] == 1 and meta["parent"] == str(ck)
    r = run(
        "unlearn",
        "--method",
        "finetune",
        "--model",
        str(ck),
        "--request",
        str(req),
        "--out",
        str(out),
        "--set",
        "epochs=abc",
    )
    assert r.exit_code == 2 and "epochs" in r.output
    r = run(
        "retrain",
        "--model",
        str(ck),
        "--request",
        str(req),
        "--out",
        str(tmp_path / "gold"),
        "--quiet",
    )
    assert r.exit_code == 0, r.output
    r = run(
        "tune",
        "--method",
        "finetune",
        "--model",
        str(ck),
        "--gold",
        str(tmp_path / "gold"),
        "--request",
        str(req),
        "--trials",
        "2",
        "--json",
        str(tmp_path / "t.json"),
    )
    assert r.exit_code == 0, r.output
    t = json.loads((tmp_path / "t.json").read_text())
    assert len(t["trials"]) == 2 and t["best_score"] == min(x["score"] for x in t["trials"])
    r = run(
        "tune", "--method", "finetune", "--model", str(ck), "--gold", str(ck), "--request", str(req)
    )
    assert r.exit_code == 2 and "not retrained without this request" in r.output


def test_sisa_train_and_unlearn_from_the_cli(tmp_path):
    ck = tmp_path / "sisa"
    args = ["--dataset", "synthetic", "--test", "0.2", "--epochs", "2", "--quiet"]
    r = run("train", "--out", str(ck), *args, "--sisa-shards", "2", "--sisa-slices", "2")
    assert r.exit_code == 0, r.output
    assert (ck / "sisa.json").exists() and (ck / "split.json").exists()
    split = json.loads((ck / "split.json").read_text())
    sisa = json.loads((ck / "sisa.json").read_text())
    first_slice_of_shard0 = sisa["slice_ids"][0][-1][:5]  # last slice: cheapest to redo
    req = tmp_path / "req.json"
    req.write_text(json.dumps({"ids": first_slice_of_shard0}))
    out = tmp_path / "unl"
    r = run(
        "unlearn", "--method", "sisa", "--model", str(ck), "--request", str(req), "--out", str(out)
    )
    assert r.exit_code == 0, r.output
    assert "SISA retraining cost saved" in " ".join(r.output.split())
    after = json.loads((out / "sisa.json").read_text())
    assert not set(first_slice_of_shard0) & {
        i for sh in after["slice_ids"] for sl in sh for i in sl
    }
    assert set(split["train"]) - set(first_slice_of_shard0) == {
        i for sh in after["slice_ids"] for sl in sh for i in sl
    }
    # a single-model checkpoint is refused by sisa, and an ensemble by other methods
    plain = tmp_path / "plain"
    assert run("train", "--out", str(plain), *args).exit_code == 0
    r = run(
        "unlearn",
        "--method",
        "sisa",
        "--model",
        str(plain),
        "--request",
        str(req),
        "--out",
        str(tmp_path / "x"),
    )
    assert r.exit_code == 2 and "--sisa-shards" in r.output
    r = run(
        "unlearn",
        "--method",
        "finetune",
        "--model",
        str(ck),
        "--request",
        str(req),
        "--out",
        str(tmp_path / "y"),
    )
    assert r.exit_code == 2 and "SISA ensemble" in r.output
