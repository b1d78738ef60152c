"""The one dataset object: uint8 images (N, C, H, W), int labels, class names, stable sample ids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from obliviate._io import hash_parts
from obliviate.errors import DataFormatError, RequestError


@dataclass(eq=False)
class ImageDataset:
    """An in-memory labelled image set with a stable integer id per sample.

    Guarantees (checked in ``__post_init__``): ``images`` is a uint8 tensor of shape
    (N, C, H, W); ``labels`` is int64 of shape (N,) with values in ``[0, len(class_names))``;
    ``ids`` is int64 of shape (N,) with no duplicates. Ids are what requests, splits and artifacts
    refer to; they never change when the dataset is subset or reordered.

    ``official_test`` optionally marks the samples of the source's own test partition (e.g. the
    10k MNIST test images) so that splits can keep it as the test set.
    ``source`` records how to load the dataset again (name and keyword arguments).
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    ids: torch.Tensor | None = None
    name: str = "custom"
    official_test: torch.Tensor | None = None
    source: dict[str, Any] = field(default_factory=dict)
    _fingerprint: str | None = field(default=None, init=False, repr=False)
    _pos: dict[int, int] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.images = torch.as_tensor(self.images)
        self.labels = _int_tensor(self.labels, "labels", self.name)
        if self.images.dtype != torch.uint8:
            raise DataFormatError(
                f"dataset {self.name!r}: images must be uint8 (N, C, H, W), "
                f"got {self.images.dtype}; use ImageDataset.from_float for [0, 1] floats"
            )
        if self.images.ndim == 3:
            self.images = self.images.unsqueeze(1)
        if self.images.ndim != 4:
            raise DataFormatError(
                f"dataset {self.name!r}: images must have shape (N, C, H, W), "
                f"got {tuple(self.images.shape)}"
            )
        n = self.images.shape[0]
        if self.labels.shape != (n,):
            raise DataFormatError(
                f"dataset {self.name!r}: labels shape {tuple(self.labels.shape)} != ({n},)"
            )
        self.class_names = [str(c) for c in self.class_names]
        k = len(self.class_names)
        if n and (int(self.labels.min()) < 0 or int(self.labels.max()) >= k):
            raise DataFormatError(
                f"dataset {self.name!r}: labels must lie in [0, {k}) for {k} class names, "
                f"got range [{int(self.labels.min())}, {int(self.labels.max())}]"
            )
        self.ids = (
            torch.arange(n, dtype=torch.int64)
            if self.ids is None
            else _int_tensor(self.ids, "ids", self.name)
        )
        if self.ids.shape != (n,):
            raise DataFormatError(
                f"dataset {self.name!r}: ids shape {tuple(self.ids.shape)} != ({n},)"
            )
        uniq, counts = torch.unique(self.ids, return_counts=True)
        if len(uniq) != n:
            dup = uniq[counts > 1][:10].tolist()
            raise DataFormatError(f"dataset {self.name!r}: duplicate sample ids {dup}")
        if self.official_test is not None:
            self.official_test = torch.as_tensor(self.official_test).to(torch.bool)
            if self.official_test.shape != (n,):
                raise DataFormatError(
                    f"dataset {self.name!r}: official_test mask must have shape ({n},)"
                )

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_float(
        cls,
        images: torch.Tensor | np.ndarray,
        labels: torch.Tensor | np.ndarray | Sequence[int],
        class_names: Sequence[str] | None = None,
        ids: torch.Tensor | np.ndarray | Sequence[int] | None = None,
        name: str = "custom",
        official_test: torch.Tensor | np.ndarray | Sequence[bool] | None = None,
    ) -> ImageDataset:
        """Wrap float images in [0, 1] (N, C, H, W) or (N, H, W); they are stored as uint8."""
        x = torch.as_tensor(images, dtype=torch.float32)
        if x.numel() and (
            not bool(torch.isfinite(x).all()) or float(x.min()) < 0 or float(x.max()) > 1
        ):
            raise DataFormatError(f"dataset {name!r}: float images must lie in [0, 1] (no NaN)")
        y = _int_tensor(labels, "labels", name)
        names = (
            list(class_names)
            if class_names is not None
            else [str(i) for i in range(int(y.max()) + 1 if y.numel() else 0)]
        )
        u8 = torch.round(x * 255).to(torch.uint8)
        return cls(u8, y, names, ids, name=name, official_test=official_test)

    # ------------------------------------------------------------------ properties
    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def fingerprint(self) -> str:
        """SHA-256 of ids, labels, class names and pixels: identifies the content exactly."""
        if self._fingerprint is None:
            self._fingerprint = hash_parts(
                self.ids.numpy().tobytes(),
                self.labels.numpy().tobytes(),
                "\x00".join(self.class_names),
                str(tuple(self.images.shape)),
                self.images.contiguous().numpy().tobytes(),
            )
        return self._fingerprint

    def channel_stats(self, ids: torch.Tensor | None = None) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of pixels in [0, 1] (over ``ids`` or the whole set)."""
        x = self.images if ids is None else self.images[self.positions(ids)]
        x = x.to(torch.float64) / 255.0
        mean = x.mean(dim=(0, 2, 3))
        std = x.std(dim=(0, 2, 3)).clamp_min(1e-6)
        return [round(float(m), 6) for m in mean], [round(float(s), 6) for s in std]

    # ------------------------------------------------------------------ id lookups
    def positions(self, ids: torch.Tensor | np.ndarray | Sequence[int]) -> torch.Tensor:
        """Row positions of ``ids``; unknown ids raise :class:`RequestError` naming them."""
        ids_t = torch.as_tensor(ids, dtype=torch.int64).reshape(-1)
        if self._pos is None:
            self._pos = {int(i): p for p, i in enumerate(self.ids.tolist())}
        pos = self._pos
        out = [pos.get(int(i), -1) for i in ids_t.tolist()]
        missing = [int(i) for i, p in zip(ids_t.tolist(), out, strict=True) if p < 0]
        if missing:
            raise RequestError(
                f"{len(missing)} id(s) not in dataset {self.name!r}: {_fmt_ids(missing)}"
            )
        return torch.as_tensor(out, dtype=torch.int64)

    def subset(self, ids: torch.Tensor | np.ndarray | Sequence[int]) -> ImageDataset:
        """A dataset with only ``ids`` (in that order), ids and class names kept."""
        p = self.positions(ids)
        return ImageDataset(
            self.images[p],
            self.labels[p],
            list(self.class_names),
            self.ids[p],
            name=self.name,
            official_test=None if self.official_test is None else self.official_test[p],
            source=dict(self.source),
        )

    def select_classes(self, classes: Sequence[int | str], relabel: bool = True) -> ImageDataset:
        """Keep only the given classes (indices or names); relabel them 0..k-1 in that order."""
        idx = []
        for c in classes:
            if isinstance(c, str) and not c.lstrip("-").isdigit():
                if c not in self.class_names:
                    raise DataFormatError(
                        f"dataset {self.name!r} has no class {c!r}; classes: {self.class_names}"
                    )
                idx.append(self.class_names.index(c))
            else:
                ci = int(c)
                if not 0 <= ci < self.num_classes:
                    raise DataFormatError(
                        f"dataset {self.name!r}: class index {ci} out of range "
                        f"[0, {self.num_classes})"
                    )
                idx.append(ci)
        if len(set(idx)) != len(idx):
            raise DataFormatError(f"dataset {self.name!r}: duplicate classes in {list(classes)}")
        keep = torch.isin(self.labels, torch.as_tensor(idx))
        labels = self.labels[keep]
        names = list(self.class_names)
        if relabel:
            lut = torch.full((self.num_classes,), -1, dtype=torch.int64)
            lut[torch.as_tensor(idx)] = torch.arange(len(idx))
            labels = lut[labels]
            names = [self.class_names[i] for i in idx]
        src = dict(self.source)
        src["classes"] = list(idx)
        return ImageDataset(
            self.images[keep],
            labels,
            names,
            self.ids[keep],
            name=self.name,
            official_test=None if self.official_test is None else self.official_test[keep],
            source=src,
        )

    def tensors(
        self, ids: torch.Tensor | np.ndarray | Sequence[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Float images in [0, 1] and labels, for ``ids`` (all samples if None)."""
        if ids is None:
            return self.images.float().div_(255.0), self.labels.clone()
        p = self.positions(ids)
        return self.images[p].float().div_(255.0), self.labels[p]

    def labels_of(self, ids: torch.Tensor | np.ndarray | Sequence[int]) -> torch.Tensor:
        return self.labels[self.positions(ids)]

    def __repr__(self) -> str:
        c, h, w = self.images.shape[1:]
        return (
            f"ImageDataset(name={self.name!r}, n={len(self)}, shape=({c}, {h}, {w}), "
            f"classes={self.num_classes})"
        )


def _int_tensor(x: Any, what: str, name: str) -> torch.Tensor:
    """``x`` as an int64 tensor; floats must be integral, anything else non-numeric is refused."""
    try:
        t = torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as e:
        raise DataFormatError(f"dataset {name!r}: {what} must be integers: {e}") from None
    if t.dtype == torch.bool or t.is_complex():
        raise DataFormatError(f"dataset {name!r}: {what} must be integers, got {t.dtype}")
    if t.is_floating_point():
        bad = t[~(torch.isfinite(t) & (t == torch.round(t)))]
        if bad.numel():
            raise DataFormatError(
                f"dataset {name!r}: {what} must be integers, got {bad[:5].tolist()}"
            )
    return t.to(torch.int64)


def _fmt_ids(ids: Sequence[int], limit: int = 20) -> str:
    ids = list(ids)
    s = ", ".join(str(i) for i in ids[:limit])
    return f"[{s}{', …' if len(ids) > limit else ''}]"
