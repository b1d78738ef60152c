"""Exact unlearning: ``retrain`` (gold) and SISA (ensemble artifact + ``sisa`` unlearner)."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from obliviate.data import ForgetRequest, load_dataset, make_split
from obliviate.errors import CheckpointError, ConfigError, RequestError
from obliviate.models import create_model
from obliviate.train import TrainConfig, train_model
from obliviate.unlearn import TensorSet, UnlearnTask, create_unlearner, make_task
from obliviate.unlearn.methods.retrain import reinitialize_
from obliviate.unlearn.sisa import (
    SisaEnsemble,
    aggregate,
    load_sisa,
    sisa_cost,
    sisa_partition,
    slice_epochs,
    train_sisa,
    train_sisa_model,
)

CFG = TrainConfig(epochs=3, batch_size=16, lr=0.05, seed=3)


def _equal_states(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


@pytest.fixture(scope="module")
def synth():
    g = torch.Generator().manual_seed(0)
    n = 90
    x = torch.rand(n, 1, 4, 4, generator=g)
    y = (x.flatten(1)[:, :3].argmax(1) + (x.flatten(1)[:, 3] > 0.9).long()) % 3
    ids = torch.arange(1000, 1000 + n)
    return x, y, ids


@pytest.fixture(scope="module")
def ens(synth):
    x, y, ids = synth
    return train_sisa(x, y, ids, _mlp, CFG, shards=3, slices=3, seed=7)


def _task_for(synth, forget_ids, with_retain=False) -> UnlearnTask:
    x, y, ids = synth
    m = torch.isin(ids, torch.as_tensor(forget_ids))
    retain = TensorSet(x[~m], y[~m], ids[~m]) if with_retain else None
    return UnlearnTask(forget=TensorSet(x[m], y[m], ids[m]), _retain=retain, num_classes=3)


# ------------------------------------------------------------------------------- retrain


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits")
    split = make_split(ds, seed=0, test=0.25, reserve=100, val=50)
    cfg = TrainConfig(epochs=2, lr=0.05, batch_size=64, seed=11)
    tm = train_model(ds, split, "small_cnn", cfg, show_progress=False, evaluate_parts=())
    req = ForgetRequest(split.train[[3, 50, 51, 400, 777]].tolist())
    return ds, split, tm, req, cfg


def test_retrain_equals_train_model_with_exclude_bitwise(digits):
    ds, split, tm, req, cfg = digits
    gold = train_model(
        ds, split, "small_cnn", cfg, exclude=req, show_progress=False, evaluate_parts=()
    )
    task = make_task(ds, split, req, seed=99, train_config=cfg.to_dict())
    res = create_unlearner("retrain").unlearn(tm.model, task)
    assert _equal_states(res.model.state_dict(), gold.model.state_dict())
    assert res.stats["init"] == "create_model" and res.stats["seed"] == cfg.seed
    assert res.stats["retain_size"] == len(split.train) - len(req)
    # overrides change the recipe
    res2 = create_unlearner("retrain", epochs=1).unlearn(tm.model, task)
    assert res2.stats["epochs"] == 1
    assert not _equal_states(res2.model.state_dict(), gold.model.state_dict())


def test_retrain_needs_the_original_recipe(digits):
    ds, split, tm, req, _ = digits
    task = make_task(ds, split, req)  # no train_config
    with pytest.raises(RequestError, match="original training recipe"):
        create_unlearner("retrain").unlearn(tm.model, task)
    bad = make_task(ds, split, req, train_config={"epochs": 1, "no_such_field": 2})
    with pytest.raises(ConfigError, match="no_such_field"):
        create_unlearner("retrain").unlearn(tm.model, bad)
    with pytest.raises(ConfigError, match="epochs"):
        create_unlearner("retrain", epochs=-1)


def test_retrain_user_model_reinitialises_under_seed(synth):
    x, y, ids = synth
    torch.manual_seed(0)
    user = _mlp()
    trained = copy.deepcopy(user)
    from obliviate.train import fit

    fit(trained, x, y, CFG, show_progress=False)
    task = _task_for(synth, ids[:5].tolist(), with_retain=True)
    task.train_config = CFG.to_dict()
    u = create_unlearner("retrain")
    a = u.unlearn(trained, task)
    b = u.unlearn(trained, task)
    assert a.stats["init"] == "reset_parameters"
    assert _equal_states(a.model.state_dict(), b.model.state_dict())
    # the same as re-initialising by hand and fitting on the retain set
    ref = reinitialize_(copy.deepcopy(trained), CFG.seed)
    fit(ref, task._retain.x, task._retain.y, CFG, show_progress=False)
    assert _equal_states(a.model.state_dict(), ref.state_dict())


def test_reinitialize_refuses_parameters_without_reset():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 2)
            self.scale = nn.Parameter(torch.ones(2))

        def forward(self, x):
            return self.lin(x) * self.scale

    with pytest.raises(ConfigError, match="scale"):
        reinitialize_(Scaled(), 0)


# ------------------------------------------------------------------------------- schedule


def test_slice_epoch_schedule():
    assert slice_epochs(7, 1) == [7]
    assert slice_epochs(20, 4) == [8, 8, 8, 8]  # avg = 2e/(R+1) = 8
    assert slice_epochs(1, 2) == [0, 1]
    for e in range(0, 41):
        for r in range(1, 13):
            eps = slice_epochs(e, r)
            assert len(eps) == r and min(eps) >= 0
            # the epochs telescope to ⌊R·avg⌋ = ⌊2eR/(R+1)⌋ ...
            assert sum(eps) == (2 * e * r) // (r + 1)
            # ... and the cost per shard (passes over the whole shard) is e up to rounding
            cost = sisa_cost([1] * r, eps) / r
            assert abs(cost - e) <= 0.5 + 1e-9, (e, r, eps)
            # the official float formula agrees wherever floats are not on a boundary
            avg = 2 * r / (r + 1) * e / r
            official = [int((k + 1) * avg) - int(k * avg) for k in range(r)]
            if all(abs(k * avg - round(k * avg)) > 1e-6 for k in range(1, r + 1)):
                assert official == eps


def test_partition_is_uniform_disjoint_and_seeded():
    ids = torch.arange(100, 203)
    p = sisa_partition(ids, 4, 3, seed=1)
    flat = torch.cat([t for sl in p for t in sl])
    assert sorted(flat.tolist()) == ids.tolist()
    sizes = [len(t) for sl in p for t in sl]
    assert max(sizes) - min(sizes) <= 1
    q = sisa_partition(ids, 4, 3, seed=1)
    for sa, sb in zip(p, q, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(sa, sb, strict=True))
    with pytest.raises(ConfigError, match="slices"):
        sisa_partition(ids[:5], 2, 3, seed=0)


# ------------------------------------------------------------------------------- SISA training


def test_train_sisa_structure(ens, synth):
    _, _, ids = synth
    assert ens.num_shards == 3 and ens.num_slices == 3
    assert sorted(ens.ids.tolist()) == ids.tolist()
    assert ens.epochs_per_slice == slice_epochs(CFG.epochs, 3)
    for s in range(3):
        assert len(ens.checkpoints[s]) == 4
        assert _equal_states(ens.checkpoints[s][3], ens.shards[s].state_dict())
        assert not _equal_states(ens.checkpoints[s][0], ens.checkpoints[s][3])
        assert all(t >= 0 for t in ens.slice_seconds[s])
    assert ens.train_seconds > 0
    # shards start from different initialisations
    assert not _equal_states(ens.checkpoints[0][0], ens.checkpoints[1][0])
    out = ens(synth[0][:7])
    assert out.shape == (7, 3)
    assert ens.features(synth[0][:7]).shape == (7, 3 * 8)


def _forget_in(ens, shard: int, slc: int, k: int = 1) -> list[int]:
    return ens.slice_ids[shard][slc][:k].tolist()


def test_unlearning_retrains_only_the_affected_shard_from_the_right_slice(ens, synth):
    f = _forget_in(ens, 1, 2)  # last slice of shard 1
    before = copy.deepcopy(ens)
    res = create_unlearner("sisa").unlearn(ens, _task_for(synth, f))
    new: SisaEnsemble = res.model
    st = res.stats
    assert st["shards_retrained"] == 1 and st["slices_retrained"] == 1
    assert st["restart_slice"] == {"1": 2}
    assert 0 < st["cost_saved_vs_full_sisa"] < 1
    assert st["samples_epochs"] == (len(before.shard_ids(1)) - 1) * slice_epochs(CFG.epochs, 3)[2]
    for s in (0, 2):  # unaffected shards: bitwise unchanged
        assert _equal_states(new.shards[s].state_dict(), before.shards[s].state_dict())
    for r in range(3):  # checkpoints before the affected slice are kept
        assert _equal_states(new.checkpoints[1][r], before.checkpoints[1][r])
    assert not _equal_states(new.shards[1].state_dict(), before.shards[1].state_dict())
    assert _equal_states(new.checkpoints[1][3], new.shards[1].state_dict())
    # the input ensemble is untouched; the new one forgot the id and its image
    assert f[0] in ens.ids.tolist() and f[0] not in new.ids.tolist()
    assert f[0] not in new.data.ids.tolist() and f[0] in ens.data.ids.tolist()
    assert new.data.x.shape[0] == len(synth[2]) - 1


def test_sisa_is_exact(ens, synth):
    """Unlearning == SISA training from scratch on the remaining ids (same partition, seed)."""
    x, y, ids = synth
    f = _forget_in(ens, 0, 0, 2) + _forget_in(ens, 2, 1)
    res = create_unlearner("sisa").unlearn(ens, _task_for(synth, f))
    assert res.stats["shards_retrained"] == 2
    assert res.stats["restart_slice"] == {"0": 0, "2": 1}
    assert res.stats["slices_retrained"] == 3 + 2
    ft = torch.tensor(f)
    part = [[t[~torch.isin(t, ft)] for t in sl] for sl in ens.slice_ids]
    keep = ~torch.isin(ids, ft)
    ref = train_sisa(x[keep], y[keep], ids[keep], _mlp, CFG, partition=part, seed=7)
    for s in range(3):
        assert _equal_states(res.model.shards[s].state_dict(), ref.shards[s].state_dict())
        for r in range(4):
            assert _equal_states(res.model.checkpoints[s][r], ref.checkpoints[s][r])


def test_sisa_deterministic_and_sequential_requests(ens, synth):
    f1, f2 = _forget_in(ens, 0, 1), _forget_in(ens, 1, 0)
    u = create_unlearner("sisa")
    a = u.unlearn(ens, _task_for(synth, f1)).model
    b = u.unlearn(ens, _task_for(synth, f1)).model
    assert _equal_states(a.state_dict(), b.state_dict())
    c = u.unlearn(a, _task_for(synth, f2)).model
    assert len(c.history) == 2 and sorted(c.ids.tolist()) == sorted(
        set(ens.ids.tolist()) - set(f1 + f2)
    )
    # forgetting an id twice: it is no longer in the ensemble
    with pytest.raises(RequestError, match=str(f1[0])):
        u.unlearn(c, _task_for(synth, f1))


def test_unknown_forget_ids_are_refused(ens, synth):
    x, y, _ = synth
    task = UnlearnTask(
        forget=TensorSet(x[:2], y[:2], torch.tensor([424242, 535353])), num_classes=3
    )
    with pytest.raises(RequestError, match=r"424242.*535353"):
        create_unlearner("sisa").unlearn(ens, task)
    with pytest.raises(ConfigError, match="SisaEnsemble"):
        create_unlearner("sisa").unlearn(_mlp(), _task_for(synth, [1000]))


def test_data_from_task_retain_when_ensemble_has_none(ens, synth):
    f = _forget_in(ens, 2, 1)
    bare = copy.deepcopy(ens)
    bare.data = None
    task = _task_for(synth, f, with_retain=True)
    res = create_unlearner("sisa").unlearn(bare, task)
    assert task.reads["retain"] == 1 and res.stats["data_source"] == "task"
    ref = create_unlearner("sisa").unlearn(ens, _task_for(synth, f))
    assert _equal_states(res.model.state_dict(), ref.model.state_dict())
    with pytest.raises(RequestError, match="no training tensors"):
        create_unlearner("sisa").unlearn(bare, _task_for(synth, f))
    with pytest.raises(ConfigError, match="holds no training tensors"):
        create_unlearner("sisa", data="ensemble").unlearn(bare, task)


def test_emptied_shard_leaves_the_vote(synth):
    x, y, ids = synth
    part = [[ids[:1], ids[1:2]], [ids[2:40], ids[40:90]]]
    e = train_sisa(x, y, ids, _mlp, CFG, partition=part, seed=0)
    res = create_unlearner("sisa").unlearn(e, _task_for(synth, ids[:2].tolist()))
    assert res.model.active == [False, True]
    assert _equal_states(res.model.shards[0].state_dict(), e.checkpoints[0][0])
    out = res.model(x[:5])
    assert torch.equal(out.argmax(1), res.model.shards[1](x[:5]).argmax(1))
    with pytest.raises(RequestError, match="every training sample"):
        create_unlearner("sisa").unlearn(res.model, _task_for(synth, ids[2:90].tolist()))


# ------------------------------------------------------------------------------- aggregation


def test_aggregation_on_hand_built_outputs():
    # 3 shards, 2 samples, 3 classes
    logits = torch.tensor(
        [
            [[5.0, 0.0, 0.0], [0.0, 0.0, 1.0]],
            [[0.0, 3.0, 0.0], [0.0, 2.0, 0.0]],
            [[4.0, 0.0, 0.0], [0.0, 0.0, 9.0]],
        ]
    )
    vote = aggregate(logits, "vote")
    votes = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0]])
    assert torch.allclose(vote.exp(), (votes + 1e-6) / (3 + 3e-6))
    assert vote.argmax(1).tolist() == [0, 2]
    ce = F.cross_entropy(vote, torch.tensor([2, 0]))  # finite even with zero votes
    assert math.isfinite(float(ce)) and float(ce) > 10
    # ties go to the lowest class index (np.argmax on summed one-hot votes)
    tie = torch.tensor([[[0.0, 1.0]], [[1.0, 0.0]]])
    assert aggregate(tie, "vote").argmax(1).tolist() == [0]
    ms = aggregate(logits, "mean_softmax")
    ref = torch.log(torch.softmax(logits, -1).mean(0))
    assert torch.allclose(ms, ref, atol=1e-6)
    assert torch.allclose(ms.exp().sum(1), torch.ones(2))
    assert torch.allclose(F.log_softmax(ms, 1), ms, atol=1e-6)
    with pytest.raises(ConfigError, match="aggregation"):
        aggregate(logits, "median")


def test_ensemble_forward_uses_its_aggregation(ens, synth):
    x = synth[0][:11]
    per = torch.stack([m(x) for m in ens.shards])
    assert torch.equal(ens(x), aggregate(per, "vote"))
    e2 = copy.deepcopy(ens)
    e2.aggregation = "mean_softmax"
    assert torch.allclose(e2(x), aggregate(per, "mean_softmax"))
    # copies share the (read-only) training tensors
    assert e2.data is ens.data


# ------------------------------------------------------------------------------- artifact


@pytest.fixture(scope="module")
def cnn_ens(synth):
    x, y, ids = synth
    x8 = F.interpolate(x, size=(8, 8))
    spec = {
        "name": "small_cnn",
        "kwargs": {"num_classes": 3, "in_channels": 1, "image_size": [8, 8]},
    }
    return train_sisa(
        x8,
        y,
        ids,
        spec,
        TrainConfig(epochs=2, batch_size=32, seed=1),
        shards=2,
        slices=2,
        aggregation="mean_softmax",
    )


def test_artifact_round_trip(cnn_ens, tmp_path, synth):
    p = cnn_ens.save(tmp_path / "sisa", include_data=True)
    back = load_sisa(p)
    assert isinstance(back, SisaEnsemble) and back.aggregation == "mean_softmax"
    assert back.spec == cnn_ens.spec and back.train_config == cnn_ens.train_config
    assert _equal_states(back.state_dict(), cnn_ens.state_dict())
    for s in range(2):
        for r in range(3):
            assert _equal_states(back.checkpoints[s][r], cnn_ens.checkpoints[s][r])
        pairs = zip(back.slice_ids[s], cnn_ens.slice_ids[s], strict=True)
        assert all(torch.equal(a, b) for a, b in pairs)
    assert back.slice_seconds == cnn_ens.slice_seconds
    xq = cnn_ens.data.x[:9]
    assert torch.equal(back(xq), cnn_ens(xq))
    # unlearning the loaded artifact == unlearning the in-memory one
    f = cnn_ens.slice_ids[1][1][:2].tolist()
    x8 = cnn_ens.data.x
    task = UnlearnTask(
        forget=TensorSet(*cnn_ens.data.take(torch.tensor(f)), torch.tensor(f)), num_classes=3
    )
    a = create_unlearner("sisa").unlearn(back, task).model
    b = create_unlearner("sisa").unlearn(cnn_ens, task).model
    assert _equal_states(a.state_dict(), b.state_dict())
    assert len(x8) == len(synth[2])
    # without data: saved ids only; a later save overwrites atomically
    q = cnn_ens.save(tmp_path / "sisa")
    assert load_sisa(q).data is None
    assert not (q / "data.safetensors").exists()


def test_corrupted_artifact_is_refused(cnn_ens, tmp_path):
    p = cnn_ens.save(tmp_path / "a")
    w = p / "checkpoints.safetensors"
    raw = bytearray(w.read_bytes())
    raw[-3] ^= 0xFF
    w.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_sisa(p)

    p = cnn_ens.save(tmp_path / "b")
    meta = json.loads((p / "sisa.json").read_text())
    meta["slice_ids"][0].pop()
    (p / "sisa.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="slices"):
        load_sisa(p)

    p = cnn_ens.save(tmp_path / "c")
    (p / "checkpoints.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_sisa(p)

    p = cnn_ens.save(tmp_path / "d")
    (p / "sisa.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_sisa(p)

    p = cnn_ens.save(tmp_path / "e")
    with pytest.raises(CheckpointError, match="does not fit"):
        load_sisa(p, model_factory=_mlp)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_sisa(tmp_path / "nowhere")


def test_unregistered_model_artifact_needs_a_factory(ens, tmp_path):
    p = ens.save(tmp_path / "mlp", include_data=True)
    with pytest.raises(CheckpointError, match="model_factory"):
        load_sisa(p)
    back = load_sisa(p, model_factory=_mlp)
    assert _equal_states(back.state_dict(), ens.state_dict())


def test_train_sisa_model_on_a_split_and_reload_with_dataset(tmp_path):
    ds = load_dataset("digits")
    split = make_split(ds, seed=1, test=0.5, reserve=0, val=0)
    req = ForgetRequest(split.train[:3].tolist())
    e = train_sisa_model(
        ds,
        split,
        "small_cnn",
        TrainConfig(epochs=1, batch_size=64),
        shards=2,
        slices=2,
        exclude=req,
    )
    assert sorted(e.ids.tolist()) == sorted(split.train[3:].tolist())
    assert e.meta["split_hash"] == split.hash
    assert e.spec["name"] == "small_cnn" and e.spec["kwargs"]["num_classes"] == 10
    p = e.save(tmp_path / "digits_sisa")
    back = load_sisa(p, dataset=ds)
    assert torch.equal(back.data.x, e.data.take(back.data.ids)[0])
    other = ds.subset(ds.ids[:-1])
    with pytest.raises(CheckpointError, match="dataset"):
        load_sisa(p, dataset=other)


def test_train_sisa_refuses_early_stopping(synth):
    x, y, ids = synth
    with pytest.raises(ConfigError, match="early_stop_patience"):
        train_sisa(x, y, ids, _mlp, TrainConfig(early_stop_patience=2), shards=2, slices=1)


def test_ensemble_with_registered_template_module(synth):
    x, y, ids = synth
    tmpl = create_model("small_cnn", num_classes=3, in_channels=1, image_size=[4, 4])
    e = train_sisa(x, y, ids, tmpl, TrainConfig(epochs=1, batch_size=32), shards=2, slices=1)
    assert e.spec == tmpl.obliviate_spec
