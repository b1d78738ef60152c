"""File-format readers for the dataset loaders: IDX (MNIST-style, optionally gzip-compressed)
and the CIFAR python batches (read through the restricted unpickler of
:mod:`obliviate.data.safe_pickle`). Every reader checks what it reads and raises
:class:`~obliviate.errors.DataFormatError` naming the file.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from obliviate.data.dataset import ImageDataset
from obliviate.data.safe_pickle import safe_load_file
from obliviate.errors import DataFormatError

__all__ = ["read_idx"]


def _expect(cond: bool, path: Path | str, what: str) -> None:
    if not cond:
        raise DataFormatError(f"{path}: {what}")


# ---------------------------------------------------------------------------- IDX
def _idx_file(folder: Path, stem: str) -> Path | None:
    for cand in (folder / f"{stem}.gz", folder / stem):
        if cand.is_file():
            return cand
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


# ---------------------------------------------------------------------------- CIFAR python batches
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
