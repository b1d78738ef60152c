"""Atomic file writes and content hashing (DESIGN.md: artifacts are written temp file + rename)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Temporary names beside a target: ``.{name}.{pid}.{hex}.tmp`` (or ``.old``), so that a later
#: writer can tell the leftovers of a killed process (its pid is gone) from live ones.
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{32}\.(?:tmp|old)$")


def _temp_name(path: Path, suffix: str) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.{suffix}")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    except OverflowError:
        return False
    return True


def clean_stale_temps(folder: str | os.PathLike[str], name: str | None = None) -> list[Path]:
    """Remove the temporary files and folders that killed writers left in ``folder``.

    Only names of the form ``.{name}.{pid}.{hex}.tmp|old`` whose ``pid`` is no longer running are
    removed (restricted to target ``name`` if given); a live writer's temporaries are kept.
    Returns what was removed.
    """
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for e in entries:
        m = _TEMP.match(e.name)
        if m is None or (name is not None and m["name"] != name) or _pid_alive(int(m["pid"])):
            continue
        if e.is_dir() and not e.is_symlink():
            shutil.rmtree(e, ignore_errors=True)
        else:
            e.unlink(missing_ok=True)
        removed.append(e)
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _temp_name(path, "tmp")
    tmp_path.touch(exist_ok=False)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def _swap_in(tmp: Path, path: Path) -> None:
    """Move folder ``tmp`` to ``path``, replacing whatever is there, safe against other
    processes replacing ``path`` at the same time (the last rename wins; nothing is left over)."""
    for _ in range(10_000):
        try:
            os.replace(tmp, path)  # succeeds when path is absent (or an empty folder)
            return
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise
        old = _temp_name(path, "old")
        try:
            os.replace(path, old)
        except FileNotFoundError:
            continue  # another writer moved it away first: try again
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    raise OSError(f"could not replace {path}: other writers kept replacing it")


@contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces directory ``path`` as a whole.

    Readers never see a half-written directory: either the old one or the complete new one.
    Concurrent writers of the same ``path`` do not fail (the last one wins) and leave no
    ``.old`` folders; temporaries of killed writers of ``path`` are removed on the next start.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(path.parent, path.name)
    tmp = _temp_name(path, "tmp")
    tmp.mkdir()
    try:
        yield tmp
        _swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def hash_parts(*parts: bytes | str) -> str:
    """SHA-256 over the given parts, each length-prefixed so that boundaries matter."""
    h = hashlib.sha256()
    for p in parts:
        b = p.encode() if isinstance(p, str) else bytes(p)
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def read_json(
    path: str | os.PathLike[str],
    what: str,
    error: type[Exception],
    *,
    missing: str = "does not exist",
    corrupt: str = "is not valid JSON",
) -> Any:
    """Parse the JSON file ``path``; raise ``error`` naming ``what`` when it is missing
    (``"{what} {missing}"``), unparsable (``"{what} {corrupt} (reason)"``) or unreadable."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{what} {missing}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{what} {corrupt} ({e})") from None
    except RecursionError:
        raise error(f"{what} {corrupt} (nested too deeply)") from None
    except IsADirectoryError:
        raise error(f"{what} is a folder, not a file") from None
    except OSError as e:
        raise error(f"{what} cannot be read ({e})") from None
