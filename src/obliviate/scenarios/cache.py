"""Content-addressed artifact cache of the scenario runner.

Every artifact (original model, SISA ensemble, request, gold model, unlearned model, healed model)
lives in ``<root>/<kind>/<key>`` where ``key`` hashes exactly the fields that produced it plus the
keys of its parent artifacts (:meth:`ArtifactCache.key`). A second run finds the same keys and
reuses the artifacts; a changed field changes the key of the artifacts that depend on it, and only
of those (a changed method config leaves the original and gold keys alone). Model artifacts are
checkpoint folders written atomically by :func:`obliviate.checkpoint.save_checkpoint` (or
:func:`obliviate.unlearn.sisa.save_sisa`); requests are JSON written with ``atomic_write_json``.
A killed run therefore leaves either a complete artifact or none; the temporary folders a killed
writer leaves behind are removed when the next :class:`ArtifactCache` opens the folder.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from obliviate._io import clean_stale_temps, hash_parts
from obliviate.errors import ConfigError
from obliviate.scenarios.schema import canonical_json

#: Bumped when the meaning of a cached artifact changes (invalidates every key).
CACHE_FORMAT = "obliviate.scenario-cache/1"


class ArtifactCache:
    """A folder of artifacts keyed by content hashes, with hit/miss counters per kind.

    ``hits`` and ``misses`` (``collections.Counter`` by kind) let callers and tests see what a
    run reused and what it recomputed.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"artifact cache {self.root} is a file, not a folder")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"artifact cache {self.root} cannot be created: {e}") from None
        for kind in [self.root, *(d for d in self.root.iterdir() if d.is_dir())]:
            clean_stale_temps(kind)  # leftovers of killed writers
        self.hits: Counter[str] = Counter()
        self.misses: Counter[str] = Counter()

    @staticmethod
    def key(kind: str, fields: dict[str, Any], parents: tuple[str, ...] | list[str] = ()) -> str:
        """Hash of the artifact kind, its own producing fields and its parents' keys."""
        return hash_parts(CACHE_FORMAT, kind, canonical_json(fields), *parents)[:32]

    def path(self, kind: str, key: str, suffix: str = "") -> Path:
        return self.root / kind / f"{key}{suffix}"

    def lookup(self, kind: str, key: str, suffix: str = "") -> Path | None:
        """The artifact's path if it exists (counted as a hit), else None (counted as a miss)."""
        p = self.path(kind, key, suffix)
        if p.exists():
            self.hits[kind] += 1
            return p
        self.misses[kind] += 1
        return None

    def counts(self) -> dict[str, dict[str, int]]:
        return {"hits": dict(self.hits), "misses": dict(self.misses)}


__all__ = ["CACHE_FORMAT", "ArtifactCache"]
