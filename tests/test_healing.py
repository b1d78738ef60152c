"""Healing (issue 6): similarity index vs brute-force references, twins, spare pools, heal, CLI.

Synthetic uint8 images for the index logic (checked against scipy / sklearn); sklearn digits
with small_cnn for the healing behaviour and the CLI (seconds on one core).
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import typer
from scipy.spatial.distance import cdist
from sklearn.covariance import LedoitWolf
from typer.testing import CliRunner

from obliviate.data import ForgetRequest, ImageDataset, load_dataset, make_split
from obliviate.defenses.healing import HealConfig, SparePool, heal, match_twins
from obliviate.defenses.similarity import (
    SIMILARITIES,
    PoolExhaustedError,
    SimilaritySpace,
    TwinIndex,
    greedy_unique,
    knn,
    model_state_hash,
)
from obliviate.errors import CheckpointError, ConfigError, RequestError
from obliviate.models import create_model, penultimate_features
from obliviate.train import TrainConfig, evaluate, train_model

NUM_CLASSES = 3


@pytest.fixture(scope="module")
def synth():
    """300 random 1×8×8 images of 3 classes; 150 train, 100 reserve, 50 test."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(300, 1, 8, 8, generator=g)
    y = torch.arange(300) % NUM_CLASSES
    ds = ImageDataset.from_float(x, y, name="synth_heal")
    split = make_split(ds, seed=1, test=50, reserve=100)
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=NUM_CLASSES, image_size=(8, 8)).eval()
    return ds, split, model


def _reference(ds, split, model, similarity, same_class=True):
    """Brute-force distances (train × reserve) with scipy's cdist, +inf across classes."""
    xt, yt = ds.tensors(split.train)
    xr, yr = ds.tensors(split.reserve)
    if similarity.startswith("pixel"):
        a, b = xt.flatten(1).double().numpy(), xr.flatten(1).double().numpy()
    else:
        with torch.no_grad():
            a = penultimate_features(model, xt).double().numpy()
            b = penultimate_features(model, xr).double().numpy()
    if similarity == "pixel_l2":
        d = cdist(a, b, "euclidean")
    elif similarity == "feature_cosine":
        d = cdist(a, b, "cosine")
    else:
        vi = np.linalg.inv(LedoitWolf().fit(b).covariance_)
        d = cdist(a, b, "mahalanobis", VI=vi)
    if same_class:
        d[yt.numpy()[:, None] != yr.numpy()[None, :]] = np.inf
    return d


# ------------------------------------------------------------------------------- the index


@pytest.mark.parametrize("similarity", SIMILARITIES)
def test_twin_index_matches_brute_force(synth, similarity):
    ds, split, model = synth
    idx = TwinIndex.build(ds, split, similarity=similarity, model=model, k=5)
    d = _reference(ds, split, model, similarity)
    order = np.argsort(d, axis=1, kind="stable")[:, :5]
    ref_ids = split.reserve.numpy()[order]
    ref_d = np.take_along_axis(d, order, axis=1)
    # the index computes in float32, the reference in float64: two reserve elements whose
    # distances differ in the 7th digit may swap places, so each chosen neighbour must be at the
    # reference's distance for its rank (a wrong neighbour is far off), and almost all ids agree
    pos = {rid: j for j, rid in enumerate(split.reserve.tolist())}
    chosen = np.array([[pos[r] for r in row] for row in idx.neighbors.tolist()])
    np.testing.assert_allclose(np.take_along_axis(d, chosen, axis=1), ref_d, rtol=1e-5, atol=1e-6)
    assert (idx.neighbors.numpy() == ref_ids).mean() >= 0.99
    np.testing.assert_allclose(idx.distances.numpy(), ref_d, rtol=2e-3, atol=2e-4)
    assert torch.equal(idx.train_ids, split.train)


@pytest.mark.parametrize("similarity", ["pixel_l2", "feature_mahalanobis"])
def test_twins_are_same_class_and_class_free_when_asked(synth, similarity):
    ds, split, model = synth
    idx = TwinIndex.build(ds, split, similarity=similarity, model=model, k=4)
    tw_labels = ds.labels_of(idx.neighbors.flatten()).view_as(idx.neighbors)
    assert torch.equal(tw_labels, ds.labels_of(split.train)[:, None].expand_as(tw_labels))
    free = TwinIndex.build(ds, split, similarity=similarity, model=model, k=1, same_class=False)
    d = _reference(ds, split, model, similarity, same_class=False)
    assert np.array_equal(free.neighbors[:, 0].numpy(), split.reserve.numpy()[d.argmin(1)])
    assert (ds.labels_of(free.neighbors[:, 0]) != ds.labels_of(split.train)).any()


def test_mahalanobis_ridge_matches_scipy():
    g = torch.Generator().manual_seed(3)
    ref, q = torch.rand(200, 6, generator=g), torch.rand(30, 6, generator=g)
    space = SimilaritySpace.fit("pixel_mahalanobis", ref, shrinkage=1e-3)
    sq, i = knn(space.transform(q), space.transform(ref), 3)
    cov = np.cov(ref.double().numpy(), rowvar=False) + 1e-3 * np.eye(6)
    d = cdist(q.double().numpy(), ref.double().numpy(), "mahalanobis", VI=np.linalg.inv(cov))
    assert np.array_equal(i.numpy(), np.argsort(d, 1)[:, :3])
    np.testing.assert_allclose(space.distance(sq).numpy(), np.sort(d, 1)[:, :3], rtol=1e-3)
    with pytest.raises(ConfigError, match="shrinkage"):
        SimilaritySpace.fit("pixel_mahalanobis", ref, shrinkage="oas")


def test_knn_pads_and_excludes():
    c = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    groups = torch.tensor([0, 0, 1, 1])
    sq, i = knn(
        torch.tensor([[0.9], [2.9]]),
        c,
        3,
        query_groups=torch.tensor([0, 1]),
        candidate_groups=groups,
        exclude=torch.tensor([False, True, False, False]),
    )
    assert i.tolist() == [[0, -1, -1], [3, 2, -1]]
    assert torch.isinf(sq[0, 1:]).all() and torch.allclose(
        sq[1, :2], torch.tensor([0.01, 0.81]), atol=1e-5
    )


def test_unknown_similarity_and_missing_model_are_clear(synth):
    ds, split, _ = synth
    with pytest.raises(ConfigError, match="unknown similarity 'pixel_l1'"):
        TwinIndex.build(ds, split, similarity="pixel_l1")
    with pytest.raises(ConfigError, match="needs model="):
        TwinIndex.build(ds, split, similarity="feature_cosine")
    no_reserve = make_split(ds, seed=1, test=50)
    with pytest.raises(ConfigError, match="no reserve"):
        TwinIndex.build(ds, no_reserve, similarity="pixel_l2")


def test_index_round_trip_and_hash_keys(synth, tmp_path):
    ds, split, model = synth
    idx = TwinIndex.build(ds, split, similarity="feature_mahalanobis", model=model, k=3)
    assert idx.checkpoint_hash == model_state_hash(model)
    idx.save(tmp_path / "ix")
    back = TwinIndex.load(
        tmp_path / "ix",
        expect_checkpoint_hash=model_state_hash(model),
        expect_split_hash=split.hash,
    )
    for name in ("train_ids", "neighbors", "distances", "reserve_ids"):
        assert torch.equal(getattr(back, name), getattr(idx, name))
    assert torch.equal(back.space.whiten, idx.space.whiten)
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.head.bias.add_(1e-3)
    assert model_state_hash(other) != model_state_hash(model)
    with pytest.raises(CheckpointError, match="features of checkpoint"):
        TwinIndex.load(tmp_path / "ix", expect_checkpoint_hash=model_state_hash(other))
    with pytest.raises(CheckpointError, match="built for split"):
        TwinIndex.load(tmp_path / "ix", expect_split_hash="0" * 64)
    with pytest.raises(CheckpointError, match="uses similarity"):
        TwinIndex.load(tmp_path / "ix", expect_similarity="pixel_l2")
    # a pixel index holds no model's features: any checkpoint may use it
    TwinIndex.build(ds, split, similarity="pixel_l2").save(tmp_path / "px")
    TwinIndex.load(tmp_path / "px", expect_checkpoint_hash=model_state_hash(other))
    data = (tmp_path / "ix" / "index.safetensors").read_bytes()
    (tmp_path / "ix" / "index.safetensors").write_bytes(data[:-10])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        TwinIndex.load(tmp_path / "ix")


# ------------------------------------------------------------------------- greedy matching


def test_greedy_unique_serves_in_order():
    ranked = torch.tensor([[5, 6], [5, 6], [5, 6], [7, -1]])
    asked: list[int] = []

    def research(q: int, used: set[int]) -> int | None:
        asked.append(q)
        return None

    assert greedy_unique(ranked, {7}, research) == [5, 6, None, None]
    assert asked == [2, 3]


def test_match_twins_is_unique_and_searches_further(synth):
    ds, split, model = synth
    idx = TwinIndex.build(ds, split, similarity="pixel_l2", k=1)
    first = idx.neighbors[:, 0]
    vals, counts = torch.unique(first, return_counts=True)
    shared = vals[counts > 1][0]
    a, b = split.train[first == shared][:2].tolist()
    with pytest.raises(PoolExhaustedError, match="stored twins of id"):
        match_twins(idx, [a, b])
    got = match_twins(idx, [a, b], dataset=ds)
    assert got[a] == int(shared) and got[b] != int(shared)
    d = _reference(ds, split, model, "pixel_l2")
    row = d[split.train.tolist().index(b)].copy()
    row[split.reserve.tolist().index(int(shared))] = np.inf
    assert got[b] == int(split.reserve[int(row.argmin())])
    # order matters: served first, b now gets the shared twin
    assert match_twins(idx, [b, a], dataset=ds)[b] == int(shared)


def test_match_twins_exhausted_class(synth):
    ds, split, _ = synth
    idx = TwinIndex.build(ds, split, similarity="pixel_l2", k=8)
    c0_train = split.train[ds.labels_of(split.train) == 0]
    n_res = int((ds.labels_of(split.reserve) == 0).sum())
    assert len(c0_train) > n_res
    with pytest.raises(PoolExhaustedError, match=r"classes \[0\]"):
        match_twins(idx, c0_train, dataset=ds)
    got = match_twins(idx, c0_train, dataset=ds, fallback="remaining_only")
    assert len(got) == n_res and len(set(got.values())) == n_res
    assert list(got) == c0_train[:n_res].tolist()
    with pytest.raises(RequestError, match="not training elements"):
        match_twins(idx, [int(split.reserve[0])])
    with pytest.raises(RequestError, match="duplicate"):
        match_twins(idx, [int(c0_train[0])] * 2)


# ------------------------------------------------------------------------------ spare pool


def test_spare_pool_never_reuses_after_restart(synth, tmp_path):
    ds, split, model = synth
    path = tmp_path / "pool.json"
    pool = SparePool.from_split(ds, split, size=30, seed=4, path=path)
    assert set(pool.ids.tolist()) <= set(split.reserve.tolist()) and path.exists()
    q = split.train[:6]
    xq, yq = ds.tensors(q)
    first = pool.take(xq, yq, "feature_cosine", dataset=ds, model=model, query_ids=q)
    assert (first >= 0).all() and len(set(first.tolist())) == 6
    assert torch.equal(ds.labels_of(first), yq)
    restarted = SparePool.load(path, split=split, dataset=ds)
    assert restarted.used == {int(s): int(r) for s, r in zip(first, q, strict=True)}
    again = restarted.take(xq, yq, "feature_cosine", dataset=ds, model=model, query_ids=q)
    assert not set(again.tolist()) & set(first.tolist())
    # the same queries against a fresh copy of the pool would have got the first spares
    fresh = SparePool.from_split(ds, split, size=30, seed=4)
    assert torch.equal(fresh.take(xq, yq, "feature_cosine", dataset=ds, model=model), first)
    assert len(SparePool.load(path).remaining) == 30 - 12


def test_spare_pool_exhaustion_is_atomic_or_falls_back(synth, tmp_path):
    ds, split, _ = synth
    path = tmp_path / "pool.json"
    pool = SparePool.from_split(ds, split, size=9, seed=0, path=path)
    n0 = int((pool.labels == 0).sum())
    q = split.train[ds.labels_of(split.train) == 0][: n0 + 2]
    xq, yq = ds.tensors(q)
    before = path.read_text()
    with pytest.raises(PoolExhaustedError, match="spare pool is exhausted"):
        pool.take(xq, yq, dataset=ds, query_ids=q)
    assert pool.used == {} and path.read_text() == before
    got = pool.take(xq, yq, dataset=ds, query_ids=q, fallback="remaining_only")
    assert (got[:n0] >= 0).all() and (got[n0:] == -1).all()
    assert len(SparePool.load(path).used) == n0
    with pytest.raises(ConfigError, match="fallback"):
        pool.take(xq, yq, dataset=ds, fallback="skip")
    other = make_split(ds, seed=2, test=50, reserve=100)
    with pytest.raises(CheckpointError, match="spare pool was drawn from split"):
        SparePool.load(path, split=other)


# ------------------------------------------------------------------------------------ heal


@pytest.fixture(scope="module")
def digits_case():
    ds = load_dataset("digits")
    split = make_split(ds, seed=0, test=0.2, reserve=400)
    tm = train_model(
        ds,
        split,
        "small_cnn",
        TrainConfig(epochs=8, lr=0.05, batch_size=64),
        show_progress=False,
        evaluate_parts=("test",),
    )
    damaged = copy.deepcopy(tm.model)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in damaged.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    g2 = torch.Generator().manual_seed(1)
    req = ForgetRequest(
        torch.sort(split.train[torch.randperm(len(split.train), generator=g2)[:60]]).values
    )
    return ds, split, tm.model, damaged, req


def _test_acc(model, ds, split):
    return evaluate(model, ds, split, ("test",), per_class=False)["acc/test"]


@pytest.mark.parametrize("pool", ["twins", "spares", "none"])
def test_heal_recovers_damaged_model_and_leaves_input(digits_case, pool):
    ds, split, original, damaged, req = digits_case
    state = {k: v.clone() for k, v in damaged.state_dict().items()}
    acc0 = _test_acc(damaged, ds, split)
    assert acc0 < _test_acc(original, ds, split) - 15
    res = heal(damaged, ds, split, req, pool=pool, original=original, seed=3)
    acc1 = _test_acc(res.model, ds, split)
    assert acc1 > acc0 + 10 and acc1 > 90, (acc0, acc1)
    assert all(torch.equal(v, damaged.state_dict()[k]) for k, v in state.items())
    if pool == "none":
        assert res.twins == {} and res.stats["n_without_replacement"] == len(req)
    else:
        assert set(res.twins) == set(req.ids) and len(set(res.twins.values())) == len(req)
        assert set(res.twins.values()) <= set(split.reserve.tolist())
        assert torch.equal(ds.labels_of(list(res.twins.values())), ds.labels_of(list(res.twins)))
    assert res.stats["seconds"] > 0 and res.stats["n_remaining"] == len(split.train) - len(req)


def test_heal_is_deterministic_and_uses_the_index(digits_case):
    ds, split, original, damaged, req = digits_case
    idx = TwinIndex.build(ds, split, similarity="feature_cosine", model=original)
    a = heal(damaged, ds, split, req, index=idx, original=original, seed=5)
    b = heal(
        damaged,
        ds,
        split,
        req,
        pool="twins",
        similarity="feature_cosine",
        original=original,
        seed=5,
    )
    assert a.twins == b.twins == match_twins(idx, req.ids)
    for (k, v), w in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.equal(v, w), k
    with pytest.raises(ConfigError, match="uses 'feature_cosine'"):
        heal(damaged, ds, split, req, index=idx, similarity="pixel_l2", original=original)
    with pytest.raises(CheckpointError, match="features of checkpoint"):
        heal(damaged, ds, split, req, index=idx, original=damaged)


def test_heal_rejects_bad_inputs(digits_case):
    ds, split, original, damaged, req = digits_case
    with pytest.raises(ConfigError, match="pass original="):
        heal(damaged, ds, split, req, similarity="feature_cosine")
    heal(
        damaged,
        ds,
        split,
        req,
        pool="twins",
        similarity="feature_mahalanobis",
        config=HealConfig(features_from="current", epochs=1),
    )
    with pytest.raises(RequestError, match="reserve"):
        heal(damaged, ds, split, ForgetRequest(split.reserve[:3]), pool="none")
    with pytest.raises(ConfigError, match="pool must be"):
        heal(damaged, ds, split, req, pool="shadows")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="epochs"):
        HealConfig(epochs=0)


# ------------------------------------------------------------------------------------- CLI


def test_cli_heal_twins_and_spares(digits_case, tmp_path):
    from obliviate.checkpoint import load_checkpoint, save_checkpoint
    from obliviate.cli_heal import register

    ds, split, original, damaged, req = digits_case
    app = typer.Typer()
    app.command("noop")(lambda: None)  # typer needs >1 command to keep the verb name
    register(app)
    orig_p, unl_p = tmp_path / "orig", tmp_path / "unl"
    save_checkpoint(orig_p, original, split=split, dataset=ds)
    save_checkpoint(unl_p, damaged, split=split, dataset=ds, parent=str(orig_p), kind="unlearned")
    req_p = tmp_path / "req.json"
    req.save(req_p)
    run = CliRunner().invoke
    common = ["heal", "--unlearned", str(unl_p), "--request", str(req_p)]
    r = run(
        app,
        [
            *common,
            "--pool",
            "twins",
            "--similarity",
            "feature_cosine",
            "--index",
            str(tmp_path / "ix"),
            "--out",
            str(tmp_path / "h1"),
        ],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    assert "healed" in r.output and (tmp_path / "ix" / "index.json").exists()
    ck = load_checkpoint(tmp_path / "h1")
    assert ck.meta["kind"] == "healed" and ck.meta["parent"] == str(unl_p)
    assert ck.meta["metrics"]["acc/test"] > _test_acc(damaged, ds, split) + 5
    # the saved index is reused (and verified) on the next call
    r = run(
        app,
        [
            *common,
            "--similarity",
            "feature_cosine",
            "--index",
            str(tmp_path / "ix"),
            "--out",
            str(tmp_path / "h2"),
        ],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    assert (
        json.loads((tmp_path / "h2" / "meta.json").read_text())["heal"]["replacements"]
        == (ck.meta["heal"]["replacements"])
    )
    pool_p = tmp_path / "pool.json"
    used: set[int] = set()
    for i in range(2):
        r = run(
            app,
            [
                *common,
                "--pool",
                "spares",
                "--similarity",
                "pixel_l2",
                "--spare-pool",
                str(pool_p),
                "--out",
                str(tmp_path / f"s{i}"),
            ],
            catch_exceptions=False,
        )
        assert r.exit_code == 0, r.output
        reps = set(load_checkpoint(tmp_path / f"s{i}").meta["heal"]["replacements"].values())
        assert len(reps) == len(req) and not reps & used
        used |= reps
    r = run(app, [*common, "--similarity", "pixel_l1", "--out", str(tmp_path / "bad")])
    assert r.exit_code == 2 and "unknown similarity" in r.output
