"""A restricted unpickler for data files that are pickles (CIFAR batches, packaged MNIST).

The plain :mod:`pickle` runs whatever callable a file names. This one resolves only the globals
numpy needs to rebuild arrays (plus a latin-1-only ``_codecs.encode`` that protocol-2 pickles use
for ``bytes``); the pickle opcodes themselves can build only lists, tuples, dicts, sets, strings,
bytes and numbers. Any other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``, a
user class, ...) is refused with :class:`DataFormatError` naming the file and the global, before
anything runs.
"""

from __future__ import annotations

import _compat_pickle
import gzip
import io
import os
import pickle
import zlib
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np

from obliviate.errors import DataFormatError


def _latin1_encode(obj: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """Stand-in for ``_codecs.encode`` as protocol-2 pickles use it: str → latin-1 bytes only."""
    if not isinstance(obj, str) or encoding.lower().replace("-", "") not in ("latin1", "iso88591"):
        raise DataFormatError(
            f"refused _codecs.encode({type(obj).__name__}, {encoding!r}): only latin-1 text allowed"
        )
    return obj.encode("latin1", errors)


def _numpy_attr(sub: str, attr: str) -> Any:
    """``numpy._core.<sub>.<attr>`` (numpy >= 2), else ``numpy.core.<sub>.<attr>``."""
    for base in ("numpy._core", "numpy.core"):
        try:
            return getattr(import_module(f"{base}.{sub}"), attr)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy has no {sub}.{attr}")  # pragma: no cover


# (module, name) as written in the pickle → the object to use. numpy moved ``numpy.core`` to
# ``numpy._core`` in 2.0; both spellings map to this numpy's object, so old pickles load without
# importing the deprecated alias.
_ARRAY_GLOBALS: dict[tuple[str, str], Any] = {}
for _sub, _attr in (
    ("multiarray", "_reconstruct"),
    ("multiarray", "scalar"),
    ("numeric", "_frombuffer"),
):
    _obj = _numpy_attr(_sub, _attr)
    for _base in ("numpy.core", "numpy._core"):
        _ARRAY_GLOBALS[(f"{_base}.{_sub}", _attr)] = _obj
_ARRAY_GLOBALS[("numpy", "ndarray")] = np.ndarray
_ARRAY_GLOBALS[("numpy", "dtype")] = np.dtype

#: The only globals a data pickle may name.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset({*_ARRAY_GLOBALS, ("_codecs", "encode")})


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that admits only numpy array reconstruction and plain containers.

    ``origin`` (usually the file path) is named in every error.
    """

    def __init__(self, file: io.BufferedIOBase, *, origin: str, encoding: str = "bytes") -> None:
        super().__init__(file, encoding=encoding)
        self.origin = origin

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 spellings (``__builtin__.eval``) → Python 3 names, as pickle itself does
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        key = (module, name)
        if key in _ARRAY_GLOBALS:
            return _ARRAY_GLOBALS[key]
        if key == ("_codecs", "encode"):
            return _latin1_encode
        raise DataFormatError(
            f"{self.origin}: refused to unpickle global {module}.{name}; data pickles may only "
            "contain numpy arrays, lists, dicts, strings, bytes and numbers"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise DataFormatError(f"{self.origin}: refused persistent id {pid!r} in a data pickle")


def safe_loads(data: bytes, *, origin: str = "<bytes>", encoding: str = "bytes") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`; any failure is a DataFormatError."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), origin=origin, encoding=encoding).load()
    except DataFormatError as e:
        if origin in str(e):
            raise
        raise DataFormatError(f"{origin}: {e}") from None
    except RecursionError:
        raise DataFormatError(f"{origin}: pickle nests too deeply") from None
    except Exception as e:  # a malformed pickle can raise almost anything
        raise DataFormatError(
            f"{origin}: not a valid data pickle (truncated or corrupt?): {type(e).__name__}: {e}"
        ) from None


def safe_load_file(path: str | os.PathLike[str], *, encoding: str = "bytes") -> Any:
    """Read and restrictedly unpickle ``path``; gzip-compressed files are detected and inflated."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataFormatError(f"{path}: file not found") from None
    except OSError as e:
        raise DataFormatError(f"{path}: cannot read: {e}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataFormatError(f"{path}: corrupt gzip data: {e}") from None
    return safe_loads(raw, origin=str(path), encoding=encoding)
