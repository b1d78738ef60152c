"""``fortunes``: real quotations from Debian's ``fortunes`` package, grouped by category, for
forgetting a whole category of text (issue 17; metric: MUSE's verbatim memorisation).

Source: ``/usr/share/games/fortunes/<category>`` (or ``$OBLIVIATE_FORTUNES_DIR``), plain files of
quotes separated by lines holding a single ``%``; ``scripts/setup.sh`` installs the package as
root (``apt-get install fortunes``). Only the top folder is read: the offensive ``off/`` folder
of ``fortunes-off`` is never used, and ``.dat`` / ``.u8`` companions are skipped.

Each quote's whitespace (line breaks, the tabs before attributions) is collapsed to single
spaces; quotes shorter than :data:`MIN_CHARS` or longer than :data:`MAX_CHARS` characters after
that are skipped (too short to split in half for verbatim memorisation; too long for the
64–128-token training windows). Ids are ``fortune-<category>-<index>-<hash>``: the quote's
0-based position in its file (skipped quotes counted) and the first 8 hex digits of the SHA-1
of its text, so an id never depends on the subsample. Subsampling is seeded per category
(``seed`` and the category name), so asking for more categories never changes the others'.

Default categories (:data:`DEFAULT_CATEGORIES`), eight distinct themes with ≥ 179 quotes in
bounds each (fortunes 1:1.99.1-7.3, Debian 12): computers 439, literature 180, politics 452,
science 297, songs-poems 493, startrek 179, wisdom 193, work 280.
"""

from __future__ import annotations

import hashlib
import os
import re
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from obliviate.data.texts import TextDataset, TextItem
from obliviate.errors import ConfigError, DatasetNotInstalledError

FORTUNES_DIR = Path("/usr/share/games/fortunes")
ENV_DIR = "OBLIVIATE_FORTUNES_DIR"
INSTALL = "apt-get install fortunes (as root; scripts/setup.sh does)"
DEFAULT_CATEGORIES = (
    "computers",
    "literature",
    "politics",
    "science",
    "songs-poems",
    "startrek",
    "wisdom",
    "work",
)
#: Length bounds (characters, after collapsing whitespace) of a kept quote.
MIN_CHARS = 80
MAX_CHARS = 400
_SEP = re.compile(r"^%[ \t]*$", re.MULTILINE)


def fortunes_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """The folder of category files: ``root``, ``$OBLIVIATE_FORTUNES_DIR`` or the Debian path.
    Raises :class:`DatasetNotInstalledError` naming ``apt-get install fortunes`` when it holds
    no category file."""
    folder = Path(root or os.environ.get(ENV_DIR) or FORTUNES_DIR)
    if not folder.is_dir() or not list_categories(folder):
        raise DatasetNotInstalledError(
            f"dataset 'fortunes' needs Debian's fortunes package, which is not installed "
            f"(no category files in {folder}). Install it with: {INSTALL}, or set {ENV_DIR}"
        )
    return folder


def list_categories(folder: str | os.PathLike[str]) -> list[str]:
    """Category names in ``folder``: plain files without a dot (``.dat``/``.u8`` skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_file() and "." not in p.name)


def read_category(path: str | os.PathLike[str]) -> list[str]:
    """Every quote of one fortune file, in file order, whitespace collapsed (empty ones kept as
    ``""`` so positions match the file)."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetNotInstalledError(f"fortune file {path} cannot be read ({e})") from None
    return [" ".join(q.split()) for q in _SEP.split(raw)]


def quote_id(category: str, index: int, text: str) -> str:
    """Stable id of the quote at ``index`` in ``category``'s file."""
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
    return f"fortune-{category}-{index:04d}-{digest}"


def load_fortunes(
    categories: Sequence[str] | None = None,
    per_category: int | None = 150,
    seed: int = 0,
    *,
    root: str | os.PathLike[str] | None = None,
) -> TextDataset:
    """``per_category`` quotes (``None``: all in bounds) of each of ``categories`` (default
    :data:`DEFAULT_CATEGORIES`), drawn without replacement by a generator seeded with ``seed`` and
    the category, kept in file order; ``group`` is the category. The same arguments always give
    the same dataset. Raises :class:`DatasetNotInstalledError` when the package is missing and
    :class:`ConfigError` for an unknown or repeated category, or one with too few quotes."""
    folder = fortunes_dir(root)
    cats = list(DEFAULT_CATEGORIES if categories is None else categories)
    if not cats:
        raise ConfigError("load_fortunes: categories is empty")
    if isinstance(categories, str):
        raise ConfigError(f"load_fortunes: categories must be a list of names, got {categories!r}")
    have = list_categories(folder)
    unknown = [c for c in cats if c not in have]
    if unknown:
        raise ConfigError(f"unknown fortune categories {unknown} in {folder}; available: {have}")
    if len(set(cats)) != len(cats):
        raise ConfigError(f"load_fortunes: repeated categories in {cats}")
    if per_category is not None and (isinstance(per_category, bool) or per_category < 1):
        raise ConfigError(f"per_category must be a positive int or None, got {per_category!r}")
    items: list[TextItem] = []
    for cat in cats:
        quotes = read_category(folder / cat)
        ok = [i for i, q in enumerate(quotes) if MIN_CHARS <= len(q) <= MAX_CHARS]
        if per_category is not None:
            if len(ok) < per_category:
                raise ConfigError(
                    f"fortune category {cat!r} has {len(ok)} quotes of {MIN_CHARS}-{MAX_CHARS} "
                    f"characters, fewer than per_category={per_category}"
                )
            rng = np.random.default_rng([seed, zlib.crc32(cat.encode("utf-8"))])
            ok = sorted(int(i) for i in rng.choice(ok, size=per_category, replace=False))
        items.extend(TextItem(quote_id(cat, i, quotes[i]), quotes[i], cat) for i in ok)
    meta = {
        "source": str(folder),
        "categories": cats,
        "per_category": per_category,
        "seed": seed,
        "bounds_chars": [MIN_CHARS, MAX_CHARS],
    }
    return TextDataset("fortunes", tuple(items), meta=meta)


__all__ = [
    "DEFAULT_CATEGORIES",
    "FORTUNES_DIR",
    "MAX_CHARS",
    "MIN_CHARS",
    "fortunes_dir",
    "list_categories",
    "load_fortunes",
    "quote_id",
    "read_category",
]
