"""Loading datasets by name: :func:`load_dataset` (with an in-process cache) and
:func:`list_datasets`, over the registry of :mod:`obliviate.data.catalog`. The datasets themselves
are registered by :mod:`obliviate.data.sources` (imported here, so every name is known once this
module is) and their files are read by :mod:`obliviate.data.formats`.

``load_dataset(name, **kwargs)`` returns an :class:`ImageDataset` whose ``source`` records
``{"name": name, "kwargs": kwargs}`` so that it can be loaded again exactly.
``list_datasets()`` says what exists and what is installed without loading any data.
A new loader is one function and one :func:`register_dataset` decorator (see
:mod:`obliviate.data.catalog`).
"""

from __future__ import annotations

import inspect
import json
import os
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from obliviate.data.catalog import DATASETS, DatasetInfo, Loader, Probe, register_dataset
from obliviate.data.dataset import ImageDataset
from obliviate.data.formats import read_idx
from obliviate.data.sources import (  # importing sources registers the built-in datasets
    ANIMAL_CLASSES,
    FASHION_CLASSES,
    FASHION_MNIST_DIR,
    FASHION_MNIST_ENV,
)
from obliviate.errors import ConfigError

__all__ = [
    "ANIMAL_CLASSES",
    "DATASETS",
    "FASHION_CLASSES",
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_ENV",
    "DatasetInfo",
    "Loader",
    "Probe",
    "clear_dataset_cache",
    "list_datasets",
    "load_dataset",
    "read_idx",
    "register_dataset",
]

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
