"""Seeded train / test / reserve / validation splits over stable sample ids.

The *reserve* is the spare pool of the healing paper: elements kept out of training so that
healing can later fine-tune with the twin of an unlearned element.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from obliviate._io import atomic_write_json, hash_parts, read_json
from obliviate.config import check_seed
from obliviate.data.dataset import ImageDataset
from obliviate.errors import SplitError

PARTS = ("train", "test", "reserve", "val")


@dataclass(eq=False)
class Split:
    """Disjoint id sets of one dataset. ``hash`` keys every artifact trained on this split."""

    train: torch.Tensor
    test: torch.Tensor
    reserve: torch.Tensor
    val: torch.Tensor
    dataset_fingerprint: str
    spec: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for p in PARTS:
            setattr(self, p, _id_tensor(getattr(self, p), p))
        if not isinstance(self.dataset_fingerprint, str):
            raise SplitError(
                "dataset_fingerprint must be a string, got "
                f"{type(self.dataset_fingerprint).__name__}"
            )
        seen: dict[int, str] = {}
        for p in PARTS:
            for i in getattr(self, p).tolist():
                if i in seen:
                    raise SplitError(
                        f"id {i} is in both {seen[i]!r} and {p!r}: split parts must be disjoint"
                    )
                seen[i] = p

    @property
    def hash(self) -> str:
        return hash_parts(
            self.dataset_fingerprint,
            *(torch.sort(getattr(self, p)).values.numpy().tobytes() for p in PARTS),
        )

    def part_of(self, ids: torch.Tensor | list[int]) -> list[str | None]:
        """For each id, the name of the part holding it, or None."""
        lookup = {}
        for p in PARTS:
            for i in getattr(self, p).tolist():
                lookup[i] = p
        return [lookup.get(int(i)) for i in torch.as_tensor(ids).reshape(-1).tolist()]

    def check(self, dataset: ImageDataset) -> None:
        """Raise :class:`SplitError` unless this split was made from ``dataset``'s exact content."""
        if dataset.fingerprint() != self.dataset_fingerprint:
            raise SplitError(
                f"split {self.hash[:12]} was made for dataset content "
                f"{self.dataset_fingerprint[:12]}, but dataset {dataset.name!r} has content "
                f"{dataset.fingerprint()[:12]}"
            )

    def sizes(self) -> dict[str, int]:
        return {p: int(getattr(self, p).numel()) for p in PARTS}

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {p: getattr(self, p).tolist() for p in PARTS}
        d.update(dataset_fingerprint=self.dataset_fingerprint, spec=self.spec, hash=self.hash)
        return d

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any], origin: str = "split") -> Split:
        if not isinstance(d, dict):
            raise SplitError(f"{origin}: expected a JSON object, got {type(d).__name__}")
        missing = [k for k in (*PARTS, "dataset_fingerprint") if k not in d]
        if missing:
            raise SplitError(f"{origin}: missing keys {missing}")
        spec = d.get("spec", {})
        if not isinstance(spec, dict):
            raise SplitError(f"{origin}: 'spec' must be an object")
        try:
            s = cls(*(d[p] for p in PARTS), dataset_fingerprint=d["dataset_fingerprint"], spec=spec)
        except SplitError as e:
            raise SplitError(f"{origin}: {e}") from None
        if "hash" in d and d["hash"] != s.hash:
            raise SplitError(
                f"{origin}: stored hash {str(d['hash'])[:12]} does not match its content "
                f"{s.hash[:12]} (the file was modified)"
            )
        return s

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Split:
        path = Path(path)
        d = read_json(path, f"split file {path}", SplitError)
        return cls.from_dict(d, origin=str(path))


def _id_tensor(x: Any, part: str) -> torch.Tensor:
    """Ids of one split part as a flat int64 tensor; non-integer content is a SplitError."""
    try:
        t = torch.as_tensor(x).reshape(-1)
    except (TypeError, ValueError, RuntimeError) as e:
        raise SplitError(f"split part {part!r} must be a list of integer ids: {e}") from None
    if t.numel() == 0:
        return t.to(torch.int64)
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        raise SplitError(f"split part {part!r} must hold integer ids, got {t.dtype}")
    return t.to(torch.int64)


def _count(x: int | float | None, pool: int, what: str) -> int:
    """A size given as a count (int) or a fraction of ``pool`` (float in [0, 1))."""
    if x is None:
        return 0
    if isinstance(x, bool) or not isinstance(x, int | float | np.integer | np.floating):
        raise SplitError(f"{what}: expected a count or a fraction, got {x!r}")
    if isinstance(x, float | np.floating):
        if 0 <= x < 1:
            return int(round(float(x) * pool))
        raise SplitError(
            f"{what} must be an integer count or a fraction in (0, 1), got {x!r}: pass an "
            "integer for a count"
        )
    n = int(x)
    if n < 0:
        raise SplitError(f"{what}: size must be >= 0, got {n}")
    return n


def make_split(
    dataset: ImageDataset,
    *,
    seed: int = 0,
    test: str | int | float = "official",
    val: int | float = 0,
    reserve: int | float = 0,
    train: int | float | None = None,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
) -> Split:
    """Split ``dataset`` into disjoint train / test / reserve / val id sets, deterministically.

    ``test="official"`` keeps the source's own test partition (e.g. MNIST's 10k) when the dataset
    has one, else falls back to 20 %. Integers are counts, floats in (0, 1) fractions of the pool
    left after the test set. Reserve and val are drawn next, then train (all the rest by default,
    or ``train`` samples, or ``train_per_class`` per class — RURK's "200 per class" setting).
    Same dataset + same arguments → the same split and hash.
    """
    check_seed(seed, "split seed")
    rng = np.random.default_rng(seed)
    labels = dataset.labels.numpy()
    ids = dataset.ids.numpy()
    n = len(dataset)
    order = rng.permutation(n)
    if test == "official" and dataset.official_test is not None:
        is_test = dataset.official_test.numpy()
        test_pos = order[is_test[order]]
        pool = order[~is_test[order]]
    else:
        if test == "official":
            test = 0.2
        if isinstance(test, str):
            raise SplitError(f"test: expected 'official', a count or a fraction, got {test!r}")
        nt = _count(test, n, "test")
        if nt > n:
            raise SplitError(f"test: asked for {nt} samples but dataset {dataset.name!r} has {n}")
        test_pos, pool = order[:nt], order[nt:]
    if test_per_class is not None:
        test_pos = _per_class(test_pos, labels, test_per_class, "test_per_class", dataset)
    m = len(pool)
    nr, nv = _count(reserve, m, "reserve"), _count(val, m, "val")
    if nr + nv > m:
        raise SplitError(f"reserve ({nr}) + val ({nv}) exceed the {m} non-test samples")
    reserve_pos, val_pos, rest = pool[:nr], pool[nr : nr + nv], pool[nr + nv :]
    if train_per_class is not None:
        train_pos = _per_class(rest, labels, train_per_class, "train_per_class", dataset)
    elif train is None:
        train_pos = rest
    else:
        ntr = _count(train, m, "train")
        if ntr > len(rest):
            raise SplitError(
                f"train: asked for {ntr} samples but only {len(rest)} remain after test/reserve/val"
            )
        train_pos = rest[:ntr]
    if len(train_pos) == 0:
        raise SplitError(f"the split of dataset {dataset.name!r} leaves no training samples")
    if train is None and train_per_class is None:
        _check_every_class_trains(pool, train_pos, labels, dataset)
    spec = dict(
        seed=seed,
        test=test,
        val=val,
        reserve=reserve,
        train=train,
        train_per_class=train_per_class,
        test_per_class=test_per_class,
    )
    return Split(
        train=torch.from_numpy(np.sort(ids[train_pos])),
        test=torch.from_numpy(np.sort(ids[test_pos])),
        reserve=torch.from_numpy(np.sort(ids[reserve_pos])),
        val=torch.from_numpy(np.sort(ids[val_pos])),
        dataset_fingerprint=dataset.fingerprint(),
        spec=spec,
    )


def _check_every_class_trains(
    pool: np.ndarray, train_pos: np.ndarray, labels: np.ndarray, ds: ImageDataset
) -> None:
    """Refuse a split whose val/reserve sizes leave a class of the non-test pool without a
    single training sample (e.g. ``val=0.999``)."""
    missing = sorted(set(labels[pool].tolist()) - set(labels[train_pos].tolist()))
    if missing:
        names = [ds.class_names[c] for c in missing[:5]]
        raise SplitError(
            f"the split of dataset {ds.name!r} leaves {len(train_pos)} training samples and no "
            f"training sample of class(es) {names}{' …' if len(missing) > 5 else ''}: lower "
            "val, reserve or test"
        )


def _per_class(
    pos: np.ndarray, labels: np.ndarray, k: int, what: str, ds: ImageDataset
) -> np.ndarray:
    out = []
    for c in range(ds.num_classes):
        pc = pos[labels[pos] == c]
        if len(pc) < k:
            raise SplitError(
                f"{what}={k}: class {c} ({ds.class_names[c]!r}) has only {len(pc)} samples "
                "available"
            )
        out.append(pc[:k])
    return np.concatenate(out) if out else pos[:0]
