"""Similarity search for healing: nearest reserve elements ("twins", "spares") of training elements.

The healing paper (Jasiorski, Klonowski & Woźniak 2025, arXiv 2507.10886; code
``xizula/Model-Healing``; see ``research/papers.md`` §3.3) replaces an unlearned element by its
most similar element of a reserve held out of training. This module is the public entry point:
it re-exports the search primitives and the four similarity measures with their documented
deviations (:mod:`obliviate.defenses.search`) and the precomputed twin index with its on-disk
format (:mod:`obliviate.defenses.twins`).
"""

from __future__ import annotations

from obliviate.defenses.search import (
    SIMILARITIES,
    CandidateSearcher,
    PoolExhaustedError,
    Similarity,
    SimilaritySpace,
    check_similarity,
    greedy_unique,
    knn,
    model_state_hash,
    nearest,
    raw_vectors,
    uses_features,
)
from obliviate.defenses.twins import INDEX_FORMAT, INDEX_META, INDEX_TENSORS, TwinIndex

__all__ = [
    "INDEX_FORMAT",
    "INDEX_META",
    "INDEX_TENSORS",
    "SIMILARITIES",
    "CandidateSearcher",
    "PoolExhaustedError",
    "Similarity",
    "SimilaritySpace",
    "TwinIndex",
    "check_similarity",
    "greedy_unique",
    "knn",
    "model_state_hash",
    "nearest",
    "raw_vectors",
    "uses_features",
]
