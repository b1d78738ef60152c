"""Seeding, device resolution and a shared progress bar."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from typing import TypeVar

import numpy as np
import torch

from obliviate.errors import ConfigError

T = TypeVar("T")


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a CPU generator seeded with ``seed`` for data order."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def available_devices() -> list[str]:
    """Device strings usable here: ``cpu``, then ``cuda:0`` … when torch sees CUDA devices."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return out


def parse_device(device: str | torch.device | None = None) -> torch.device:
    """The one parser of device options: ``None``/"auto" → cuda if available else cpu; "cpu",
    "cuda", "cuda:N" → that device if it exists here. Anything else (an unknown string, "", cuda
    without CUDA, an index beyond the device count) raises one :class:`ConfigError` line that
    says what is available."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    avail = ", ".join(available_devices())
    if not isinstance(device, str | torch.device):
        raise ConfigError(
            f"device must be a string such as 'cpu', got {device!r}; available: {avail}"
        )
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ConfigError(
            f"unknown device {str(device)!r}: use cpu, cuda, cuda:N or auto; available: {avail}"
        )
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {str(device)!r} is not available here: torch has no CUDA; "
                f"available: {avail}"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {str(device)!r} is not available here: "
                f"{torch.cuda.device_count()} CUDA device(s); available: {avail}"
            )
    return dev


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/"auto" → cuda if available else cpu; anything else as :func:`parse_device`."""
    return parse_device(device)


class ProgressBar:
    """A transient rich progress bar used as a context manager; ``enabled=False`` makes it silent.

    >>> with ProgressBar(total=10, desc="train") as bar:
    ...     for _ in range(10):
    ...         bar.advance()
    """

    def __init__(self, total: int | None, desc: str = "", enabled: bool = True) -> None:
        self.total, self.desc, self.enabled = total, desc, enabled
        self._progress = None
        self._task = None

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                transient=True,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.desc, total=self.total)
        return self

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None


def progress(
    it: Iterable[T], total: int | None = None, desc: str = "", enabled: bool = True
) -> Iterator[T]:
    """Iterate with a transient progress bar (silent when ``enabled`` is False)."""
    with ProgressBar(total, desc, enabled) as bar:
        for x in it:
            yield x
            bar.advance()
