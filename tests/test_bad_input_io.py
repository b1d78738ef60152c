"""Issue 20 regressions: bad sidecars, requests, YAML, paths and writers give one-line errors
naming the input (exit 2 from the CLI), and never damage existing files."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path

import pytest
import safetensors.torch
import torch
from typer.testing import CliRunner

from obliviate._io import atomic_dir, clean_stale_temps, sha256_file
from obliviate.attacks.selection import candidate_ids
from obliviate.checkpoint import META, SPLIT, WEIGHTS, load_checkpoint, save_checkpoint
from obliviate.cli import app
from obliviate.data import ForgetRequest, ImageDataset, make_split
from obliviate.errors import CheckpointError, RequestError
from obliviate.models import create_model
from obliviate.report import build_report
from obliviate.scenarios.cache import ArtifactCache
from obliviate.scenarios.schema import ScenarioError, scenario_from_yaml
from obliviate.steps.audit import audit_step

runner = CliRunner()


def _snapshot(p: Path) -> tuple[bytes, int]:
    return p.read_bytes(), p.stat().st_mtime_ns


def _one_line_exit2(res, needle: str) -> None:
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    err = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(err) == 1, res.output
    assert needle in err[0], res.output


@pytest.fixture()
def ck(tmp_path):
    g = torch.Generator().manual_seed(0)
    ds = ImageDataset(
        torch.randint(0, 256, (60, 1, 8, 8), dtype=torch.uint8, generator=g),
        torch.arange(60) % 3,
        ["a", "b", "c"],
        name="tiny",
    )
    split = make_split(ds, seed=0, test=10)
    model = create_model("small_cnn", num_classes=3, in_channels=1, image_size=[8, 8])
    path = tmp_path / "ck"
    save_checkpoint(path, model, split=split, dataset=ds)
    return path, ds, split


def _edit_meta(path: Path, **changes) -> None:
    meta = json.loads((path / META).read_text())
    for k, v in changes.items():
        if v is ...:
            meta.pop(k, None)
        else:
            meta[k] = v
    (path / META).write_text(json.dumps(meta))


# ----------------------------------------------------------------------------- sidecars
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"model": "small_cnn"}, "'model'"),
        ({"model": {"name": "small_cnn", "kwargs": None}}, "model.kwargs"),
        ({"model": {"name": "small_cnn"}}, "model.kwargs"),
        ({"model": ...}, "'model'"),
        ({"dataset": ...}, "'dataset'"),
        ({"dataset": {"fingerprint": "x", "num_classes": 10**9}}, "dataset.num_classes"),
        (
            {
                "model": {
                    "name": "small_cnn",
                    "kwargs": {"num_classes": 3, "image_size": [10**5] * 2},
                }
            },
            "model.kwargs.image_size",
        ),
    ],
)
def test_bad_meta_is_one_checkpoint_error(ck, change, field):
    path = ck[0]
    _edit_meta(path, **change)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert META in str(e.value) and field in str(e.value) and str(path) in str(e.value)


def test_bad_meta_cli_exit_2(ck):
    path = ck[0]
    _edit_meta(path, model="small_cnn")
    before = _snapshot(path / META)
    res = runner.invoke(app, ["eval", "--model", str(path)])
    _one_line_exit2(res, META)
    assert _snapshot(path / META) == before


@pytest.mark.parametrize("name", [SPLIT, WEIGHTS])
def test_sidecar_that_is_a_folder(ck, name):
    path = ck[0]
    (path / name).unlink()
    (path / name).mkdir()
    with pytest.raises(CheckpointError, match=f"{name} is a folder"):
        load_checkpoint(path)


def test_nonfinite_weights_refused_unless_allowed(ck):
    path = ck[0]
    state = safetensors.torch.load_file(str(path / WEIGHTS))
    k = next(iter(state))
    state[k][...] = float("nan")
    safetensors.torch.save_file(state, str(path / WEIGHTS))
    _edit_meta(path, weights_sha256=sha256_file(path / WEIGHTS))
    with pytest.raises(CheckpointError, match="non-finite"):
        load_checkpoint(path)
    assert load_checkpoint(path, allow_nonfinite=True).model is not None


# ----------------------------------------------------------------------------- requests
@pytest.mark.parametrize(
    "ids",
    ["[1, 1e30]", f"[1, {10**30}]", f"[{2**63}]", "[[1, 2], [3]]", "[" * 100_000 + "]" * 100_000],
)
def test_bad_request_ids(tmp_path, ids):
    f = tmp_path / "r.json"
    f.write_text('{"ids": ' + ids + "}")
    with pytest.raises(RequestError) as e:
        ForgetRequest.load(f)
    assert str(f) in str(e.value)


def test_controlled_duplicates_refused(ck):
    _, ds, split = ck
    i = int(split.train[0])
    with pytest.raises(RequestError, match="duplicate"):
        candidate_ids(ds, split, controlled_ids=[i, i])


def test_attack_requests_unknown_method_keeps_out(tmp_path, ck):
    out = tmp_path / "req.json"
    out.write_text('{"ids": [1, 2]}\n')
    before = _snapshot(out)
    res = runner.invoke(
        app,
        ["attack", "requests", "--strategy", "random", "--budget", "3", "--model", str(ck[0]),
         "--out", str(out), "--method", "no_such_method"],
    )  # fmt: skip
    _one_line_exit2(res, "no_such_method")
    assert _snapshot(out) == before


# ----------------------------------------------------------------------------- YAML
def _bomb() -> str:
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    prev = "a"
    for i in range(1, 10):
        n = chr(ord("a") + i)
        text += f"{n}: &{n} [" + ",".join([f"*{prev}"] * 9) + "]\n"
        prev = n
    return text


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (_bomb(), "aliases"),
        ("x: " + "[" * 5000 + "]" * 5000, "nested"),
        ("name: a\nseeds: [" + ",".join(["1"] * 20_000) + "]", "seeds"),
        ("name: a\n" + "#" * (2 << 20), "MiB"),
        (f"name: a\nseeds: [{10**30}]", "out of range"),
        ("name: a\nx: 1.0e+999", "out of range"),
        ("name: ../x\ndataset: {name: digits}\nrequests: [{ids: [1]}]", "name"),
        ("name: a/b\ndataset: {name: digits}\nrequests: [{ids: [1]}]", "name"),
    ],
)
def test_yaml_limits(text, needle):
    with pytest.raises(ScenarioError) as e:
        scenario_from_yaml(text, origin="scn.yaml")
    assert "scn.yaml" in str(e.value) and needle in str(e.value)


def test_failed_run_leaves_no_store(tmp_path):
    scn = tmp_path / "scn.yaml"
    scn.write_text("name: ../evil\ndataset: {name: digits}\nrequests: [{ids: [1]}]\n")
    db = tmp_path / "r.db"
    res = runner.invoke(
        app, ["run", str(scn), "--results", str(db), "--cache", str(tmp_path / "c")]
    )
    _one_line_exit2(res, "scn.yaml")
    assert not db.exists()


# ----------------------------------------------------------------------------- paths
def test_output_paths_refused(tmp_path, ck):
    afile = tmp_path / "afile"
    afile.write_text("x")
    before = _snapshot(afile)
    res = runner.invoke(app, ["eval", "--model", str(ck[0]), "--json", str(tmp_path)])
    _one_line_exit2(res, str(tmp_path))
    res = runner.invoke(app, ["train", "--dataset", "digits", "--out", str(afile / "ck")])
    _one_line_exit2(res, str(afile))
    res = runner.invoke(app, ["train", "--dataset", "digits", "--out", "/proc/obliviate-ck"])
    _one_line_exit2(res, "/proc")
    scn = tmp_path / "s.yaml"
    scn.write_text("name: a\n")
    res = runner.invoke(app, ["run", str(scn), "--cache", str(afile)])
    _one_line_exit2(res, str(afile))
    assert _snapshot(afile) == before


# ----------------------------------------------------------------------------- writers
def _replace_many(root: str, k: int) -> int:
    errors = 0
    for i in range(200):
        try:
            with atomic_dir(Path(root) / "x") as t:
                (t / "f").write_text(f"{k}-{i}")
        except OSError:
            errors += 1
    return errors


def test_atomic_dir_two_processes(tmp_path):
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        errors = pool.starmap(_replace_many, [(str(tmp_path), 0), (str(tmp_path), 1)])
    assert errors == [0, 0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]


def test_stale_temps_of_dead_writers_cleaned(tmp_path):
    dead = 2**22 + 12345  # above the default pid_max: never a live process
    stale = tmp_path / "kind" / f".abc.{dead}.{'0' * 32}.tmp"
    stale.mkdir(parents=True)
    live = tmp_path / "kind" / f".abc.{os.getpid()}.{'1' * 32}.tmp"
    live.mkdir()
    ArtifactCache(tmp_path)
    assert not stale.exists() and live.exists()
    assert clean_stale_temps(tmp_path / "kind") == []


def test_report_folder_swapped_whole(tmp_path):
    rows = [
        {"scenario": "s", "step": "original", "step_index": 0, "method": "original",
         "variant": "", "seed": 0, "metrics": {"acc/test": 90.0}, "timings": {}, "info": {}},
    ]  # fmt: skip
    out = tmp_path / "rep"
    build_report(rows, [], out, generated="")
    build_report(rows, [], out, generated="")
    assert {p.name for p in out.iterdir()} == {"report.md", "report.html", "figures"}
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]


@pytest.mark.parametrize("kind", ["test", "dup", "empty"])
def test_audit_request_names_bad_ids(ck, kind):
    path, ds, split = ck
    t, i = int(split.test[0]), int(split.train[0])
    ids = {"test": [t], "dup": [i, i], "empty": []}[kind]
    with pytest.raises(RequestError) as e:
        audit_step(str(path), request=ForgetRequest(ids), dataset=ds, split=split)
    msg = str(e.value)
    assert "gold" not in msg
    assert (str(t) if kind == "test" else str(i) if kind == "dup" else "empty") in msg
