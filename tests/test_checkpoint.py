"""Checkpoints: round trip, corruption, truncation, mismatches, atomic writes, no pickle."""

from __future__ import annotations

import json
import os

import pytest
import safetensors.torch
import torch
from torch import nn

from obliviate.checkpoint import META, SPLIT, WEIGHTS, load_checkpoint, read_meta, save_checkpoint
from obliviate.data import ImageDataset, make_split
from obliviate.errors import CheckpointError
from obliviate.models import create_model


@pytest.fixture()
def setup(tmp_path):
    g = torch.Generator().manual_seed(0)
    ds = ImageDataset(
        torch.randint(0, 256, (60, 1, 8, 8), dtype=torch.uint8, generator=g),
        torch.arange(60) % 3,
        ["a", "b", "c"],
        name="tiny",
    )
    split = make_split(ds, seed=0, test=10)
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=3, in_channels=1, image_size=[8, 8])
    path = tmp_path / "ck"
    save_checkpoint(
        path, model, split=split, dataset=ds, train_config={"epochs": 1}, metrics={"acc/test": 12.5}
    )
    return ds, split, model, path


def test_round_trip(setup):
    ds, split, model, path = setup
    assert sorted(os.listdir(path)) == sorted([META, WEIGHTS, SPLIT])
    ck = load_checkpoint(path)
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(ck.model(x), model.eval()(x))
    assert ck.split.hash == split.hash
    assert ck.meta["dataset"]["fingerprint"] == ds.fingerprint()
    assert ck.meta["metrics"]["acc/test"] == 12.5
    assert ck.meta["model"]["name"] == "small_cnn"
    assert not any(p.name.endswith(".tmp") for p in path.parent.iterdir())


def test_corrupt_and_truncated_weights_are_refused(setup):
    _, _, _, path = setup
    w = path / WEIGHTS
    data = bytearray(w.read_bytes())
    data[-3] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)
    w.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)


def test_missing_and_garbage_meta(setup, tmp_path):
    _, _, _, path = setup
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    (path / META).write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        read_meta(path)
    (path / META).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CheckpointError, match="format"):
        load_checkpoint(path)
    (path / META).unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(path)


def test_mismatched_model_and_split_are_refused(setup):
    _, _, _, path = setup
    with pytest.raises(CheckpointError, match="expected 'resnet20'"):
        load_checkpoint(path, expect_model="resnet20")
    with pytest.raises(CheckpointError, match="expected split"):
        load_checkpoint(path, expect_split_hash="0" * 64)
    other = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(path, model=other)


def test_weights_swapped_for_another_architecture(setup):
    from obliviate._io import sha256_file

    _, _, _, path = setup
    m2 = create_model("small_cnn", num_classes=5, in_channels=1, image_size=[8, 8])
    safetensors.torch.save_file(m2.state_dict(), str(path / WEIGHTS))
    meta = json.loads((path / META).read_text())
    meta["weights_sha256"] = sha256_file(path / WEIGHTS)
    (path / META).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_checkpoint(path)


def test_tampered_split_is_refused(setup):
    _, _, _, path = setup
    d = json.loads((path / SPLIT).read_text())
    d["train"] = d["train"][1:]
    (path / SPLIT).write_text(json.dumps(d))
    with pytest.raises(CheckpointError, match="split"):
        load_checkpoint(path)


def test_failed_write_leaves_old_checkpoint_intact(setup, monkeypatch):
    ds, split, model, path = setup
    before = {p.name: p.read_bytes() for p in path.iterdir()}

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    m2 = create_model("small_cnn", num_classes=3, in_channels=1, image_size=[8, 8])
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, m2, split=split, dataset=ds)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["ck"], "no temp folder left behind"
    with pytest.raises(OSError):
        save_checkpoint(path.parent / "fresh", m2, split=split, dataset=ds)
    assert not (path.parent / "fresh").exists()


def test_user_model_needs_explicit_architecture(setup, tmp_path):
    ds, split, _, _ = setup
    mine = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    save_checkpoint(tmp_path / "mine", mine, split=split, dataset=ds)
    with pytest.raises(CheckpointError, match="pass model="):
        load_checkpoint(tmp_path / "mine")
    ck = load_checkpoint(tmp_path / "mine", model=nn.Sequential(nn.Flatten(), nn.Linear(64, 3)))
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(ck.model(x), mine(x))


def test_no_pickle_in_checkpoint(setup):
    _, _, _, path = setup
    for p in path.iterdir():
        assert not p.read_bytes().startswith(b"\x80"), f"{p.name} looks like a pickle"
