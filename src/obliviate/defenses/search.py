"""Similarity search for healing: nearest reserve elements ("twins", "spares") of training elements.

The healing paper (Jasiorski, Klonowski & Woźniak 2025, arXiv 2507.10886; code
``xizula/Model-Healing``, ``shadow-research-*.ipynb``; see ``research/papers.md`` §3.3) replaces an
unlearned element by its most similar element of a reserve held out of training. This module
holds the search primitives (vectors, fitted spaces, batched k-NN, greedy unique matching, the
:class:`CandidateSearcher` over the reserve); the precomputed twin index is in
:mod:`obliviate.defenses.twins`. The paper's four similarity measures are all here:

* ``pixel_l2`` — Euclidean distance between flattened [0, 1] pixels (``torch.cdist`` there);
* ``pixel_mahalanobis`` — Euclidean distance after whitening pixels with the reserve's mean and
  covariance;
* ``feature_cosine`` — cosine similarity of penultimate features (reported as distance
  ``1 − cos``);
* ``feature_mahalanobis`` — Mahalanobis distance of penultimate features.

Choices (documented deviations):

* **Covariance.** The notebooks whiten with ``Σ + 1e-5·I``. MNIST's border pixels are constant,
  so that ridge makes the whitening blow up directions that carry only numerical noise; we use the
  Ledoit–Wolf shrinkage estimate (``sklearn.covariance.LedoitWolf``) fitted on the reserve by
  default, and the notebooks' ridge as the option ``shrinkage=<float>``. One covariance for the
  whole reserve (not one per class: a class has ~2 000 reserve images for 784 pixel dimensions).
  Whitening is ``z = (v − μ) · U Λ^{-1/2}`` with ``Σ = U Λ Uᵀ``, so ``‖z_a − z_b‖`` is exactly the
  Mahalanobis distance.
* **Features.** Penultimate features of the *original* model by default (an unlearned model's
  features may be noise: Fisher forgetting can collapse it to chance, and healing exists to repair
  exactly that case); the features of any other model (e.g. the current one) are an option. An
  index of feature vectors is keyed by the hash of the weights that produced them
  (:func:`model_state_hash`) and refuses to be used with other weights.
* **Speed.** Every search is a chunked matrix product (``‖a‖² + ‖b‖² − 2abᵀ``) per class followed
  by ``topk`` — no Python loop over samples; only greedy unique matching is sequential, because
  it is sequential by definition.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from obliviate._io import hash_parts
from obliviate.data.dataset import ImageDataset
from obliviate.errors import ConfigError, ObliviateError
from obliviate.inference import batched_features
from obliviate.utils import resolve_device

__all__ = [
    "SIMILARITIES",
    "CandidateSearcher",
    "PoolExhaustedError",
    "Similarity",
    "SimilaritySpace",
    "check_similarity",
    "greedy_unique",
    "knn",
    "model_state_hash",
    "nearest",
    "raw_vectors",
    "uses_features",
]

SIMILARITIES = ("pixel_l2", "pixel_mahalanobis", "feature_cosine", "feature_mahalanobis")
Similarity = Literal["pixel_l2", "pixel_mahalanobis", "feature_cosine", "feature_mahalanobis"]


class PoolExhaustedError(ObliviateError):
    """No unused same-class reserve element is left for some requested ids."""


def check_similarity(similarity: str) -> str:
    """Return ``similarity`` or raise :class:`ConfigError` listing the known measures."""
    if similarity not in SIMILARITIES:
        raise ConfigError(f"unknown similarity {similarity!r}; choose one of {list(SIMILARITIES)}")
    return similarity


def uses_features(similarity: str) -> bool:
    return check_similarity(similarity).startswith("feature_")


def model_state_hash(model: nn.Module) -> str:
    """SHA-256 of a model's state dict (names, dtypes, shapes and values, in sorted order).

    Two models with equal weights and buffers get the same hash; any changed value changes it.
    It keys feature indexes: features are a function of exactly these weights.
    """
    parts: list[bytes | str] = []
    for name, t in sorted(model.state_dict().items()):
        a = t.detach().to("cpu").contiguous()
        parts += [name, str(a.dtype), str(tuple(a.shape)), a.view(-1).view(torch.uint8).numpy()]
    return hash_parts(*parts)


@torch.inference_mode()
def raw_vectors(
    x: Tensor,
    similarity: str,
    model: nn.Module | None = None,
    *,
    batch_size: int = 1024,
    device: str | torch.device = "cpu",
) -> Tensor:
    """The un-whitened vectors a similarity compares: flattened pixels or penultimate features.

    ``x`` are float pixels in [0, 1] of shape (N, C, H, W). Feature similarities need ``model``
    (evaluated in eval mode, its mode restored). Returns float32 (N, D) on the CPU.
    """
    if not uses_features(similarity):
        return x.reshape(len(x), -1).float().cpu()
    if model is None:
        raise ConfigError(
            f"similarity {similarity!r} compares penultimate features: pass the model whose "
            "features to use (the original model by default)"
        )
    return batched_features(model, x, batch_size=batch_size, device=resolve_device(device))


@dataclass
class SimilaritySpace:
    """Maps raw vectors to a space where the similarity is the Euclidean distance.

    ``pixel_l2``: identity; cosine: unit-normalise (``‖a − b‖² = 2 − 2cos``); Mahalanobis:
    ``(v − mean) @ whiten``. :meth:`distance` converts squared Euclidean distances in that space
    back to the similarity's own distance (Euclidean, Mahalanobis or ``1 − cos``).
    """

    similarity: str
    mean: Tensor | None = None
    whiten: Tensor | None = None
    shrinkage: str | float | None = None

    @classmethod
    def fit(
        cls, similarity: str, reference: Tensor, shrinkage: str | float = "ledoit_wolf"
    ) -> SimilaritySpace:
        """Fit the space on raw ``reference`` vectors (the reserve); only Mahalanobis needs it.

        ``shrinkage="ledoit_wolf"`` uses sklearn's Ledoit–Wolf covariance; a float ``r`` uses the
        empirical covariance + ``r·I`` (the healing notebooks: ``1e-5``).
        """
        check_similarity(similarity)
        if not similarity.endswith("mahalanobis"):
            return cls(similarity)
        if len(reference) < 2:
            raise ConfigError(
                f"similarity {similarity!r} needs at least 2 reference (reserve) vectors to fit a "
                f"covariance, got {len(reference)}"
            )
        v = reference.double().numpy()
        if shrinkage == "ledoit_wolf":
            from sklearn.covariance import LedoitWolf

            lw = LedoitWolf(assume_centered=False).fit(v)
            mean, cov = lw.location_, lw.covariance_
        elif isinstance(shrinkage, int | float) and not isinstance(shrinkage, bool):
            if shrinkage < 0:
                raise ConfigError(f"shrinkage ridge must be >= 0, got {shrinkage}")
            mean = v.mean(0)
            cov = np.cov(v, rowvar=False, bias=False).reshape(v.shape[1], v.shape[1])
            cov = cov + float(shrinkage) * np.eye(v.shape[1])
        else:
            raise ConfigError(
                f"shrinkage must be 'ledoit_wolf' or a ridge (float >= 0), got {shrinkage!r}"
            )
        lam, u = np.linalg.eigh(cov)
        if lam.min() <= 0:
            raise ConfigError(
                f"similarity {similarity!r}: the covariance is singular (smallest eigenvalue "
                f"{lam.min():.3g}); use shrinkage='ledoit_wolf' or a positive ridge"
            )
        w = u / np.sqrt(lam)[None, :]
        return cls(
            similarity,
            torch.from_numpy(mean).float(),
            torch.from_numpy(w).float(),
            shrinkage,
        )

    def transform(self, v: Tensor) -> Tensor:
        """Raw vectors → the Euclidean space of this similarity (float32)."""
        v = v.float()
        if self.similarity.endswith("mahalanobis"):
            if self.mean is None or self.whiten is None:
                raise ConfigError(f"similarity {self.similarity!r}: the space was never fitted")
            if v.shape[1] != self.mean.shape[0]:
                raise ConfigError(
                    f"similarity {self.similarity!r}: vectors have {v.shape[1]} dimensions, the "
                    f"fitted space {self.mean.shape[0]}"
                )
            return (v - self.mean) @ self.whiten
        if self.similarity == "feature_cosine":
            return torch.nn.functional.normalize(v, dim=1)
        return v

    def distance(self, sqdist: Tensor) -> Tensor:
        """Squared Euclidean distance in the space → the similarity's own distance."""
        if self.similarity == "feature_cosine":
            return sqdist / 2.0
        return sqdist.sqrt()

    def tensors(self) -> dict[str, Tensor]:
        if self.mean is None or self.whiten is None:
            return {}
        return {"space_mean": self.mean.contiguous(), "space_whiten": self.whiten.contiguous()}


def knn(
    queries: Tensor,
    candidates: Tensor,
    k: int,
    *,
    query_groups: Tensor | None = None,
    candidate_groups: Tensor | None = None,
    exclude: Tensor | None = None,
    chunk: int = 4096,
) -> tuple[Tensor, Tensor]:
    """The ``k`` nearest candidates (squared Euclidean distance) of every query, batched.

    With groups (class labels), a query only sees candidates of its own group. ``exclude`` is a
    boolean mask over candidates that are never returned (used spares). Returns
    ``(sqdist, index)`` of shape (Q, k), nearest first; rows with fewer than ``k`` admissible
    candidates are padded with ``inf`` / ``-1``. Ties are broken by ``torch.topk``.
    """
    q, c = queries.float(), candidates.float()
    if q.ndim != 2 or c.ndim != 2 or (len(q) and len(c) and q.shape[1] != c.shape[1]):
        raise ConfigError(
            f"knn: queries {tuple(q.shape)} and candidates {tuple(c.shape)} must be (N, D) "
            "with the same D"
        )
    if k < 1:
        raise ConfigError(f"knn: k must be >= 1, got {k}")
    nq = len(q)
    out_d = torch.full((nq, k), float("inf"))
    out_i = torch.full((nq, k), -1, dtype=torch.int64)
    if nq == 0 or len(c) == 0:
        return out_d, out_i
    if (query_groups is None) != (candidate_groups is None):
        raise ConfigError("knn: give both query_groups and candidate_groups, or neither")
    allowed = torch.ones(len(c), dtype=torch.bool) if exclude is None else ~exclude.bool()
    if query_groups is None:
        groups = [(torch.arange(nq), torch.nonzero(allowed).flatten())]
    else:
        qg, cg = query_groups.long(), candidate_groups.long()
        groups = [
            (torch.nonzero(qg == g).flatten(), torch.nonzero((cg == g) & allowed).flatten())
            for g in torch.unique(qg).tolist()
        ]
    for qi, ci in groups:
        if len(ci) == 0:
            continue
        cand = c[ci]
        c_sq = cand.pow(2).sum(1)
        kk = min(k, len(ci))
        for s in range(0, len(qi), chunk):
            rows = qi[s : s + chunk]
            qb = q[rows]
            d = qb.pow(2).sum(1, keepdim=True) + c_sq[None, :] - 2.0 * (qb @ cand.T)
            d.clamp_(min=0.0)
            dv, di = torch.topk(d, kk, dim=1, largest=False)
            out_d[rows, :kk] = dv
            out_i[rows, :kk] = ci[di]
    return out_d, out_i


def greedy_unique(
    ranked: Tensor,
    used: set[int],
    research: Callable[[int, set[int]], int | None] | None = None,
) -> list[int | None]:
    """Greedy unique matching (the healing notebooks): query after query *in order*, take its
    nearest candidate not yet taken.

    ``ranked`` (Q, k) holds each query's candidates nearest first (``-1`` = none). When all of a
    query's ranked candidates are taken, ``research(q, taken)`` is asked for its nearest free
    candidate (``None``: none left); without ``research`` the query gets ``None``. ``used`` is
    updated in place. Returns one candidate (or ``None``) per query.
    """
    out: list[int | None] = []
    for qpos, row in enumerate(ranked.tolist()):
        pick = next((c for c in row if c >= 0 and c not in used), None)
        if pick is None and research is not None:
            pick = research(qpos, used)
        if pick is not None:
            used.add(pick)
        out.append(pick)
    return out


@dataclass
class CandidateSearcher:
    """Reserve elements embedded once; answers nearest-candidate queries by batched products.

    ``ids``/``labels`` are the candidates' sample ids and classes, ``vectors`` their embedding in
    the fitted :class:`SimilaritySpace`. ``model`` (feature similarities) embeds the queries; its
    hash is ``model_hash``.
    """

    space: SimilaritySpace
    ids: Tensor
    labels: Tensor
    vectors: Tensor
    model: nn.Module | None = None
    model_hash: str | None = None
    batch_size: int = 1024
    device: str = "cpu"
    _pos: dict[int, int] = field(default_factory=dict, repr=False)

    @classmethod
    def build(
        cls,
        dataset: ImageDataset,
        ids: Tensor | Sequence[int],
        similarity: str,
        *,
        model: nn.Module | None = None,
        space: SimilaritySpace | None = None,
        shrinkage: str | float = "ledoit_wolf",
        batch_size: int = 1024,
        device: str = "cpu",
    ) -> CandidateSearcher:
        """Embed ``dataset``'s elements ``ids`` (fitting the space on them unless given)."""
        check_similarity(similarity)
        ids_t = torch.as_tensor(ids, dtype=torch.int64).reshape(-1)
        x, y = dataset.tensors(ids_t)
        raw = raw_vectors(x, similarity, model, batch_size=batch_size, device=device)
        if space is None:
            space = SimilaritySpace.fit(similarity, raw, shrinkage)
        elif space.similarity != similarity:
            raise ConfigError(
                f"space is for similarity {space.similarity!r}, asked for {similarity!r}"
            )
        mh = model_state_hash(model) if model is not None and uses_features(similarity) else None
        return cls(space, ids_t, y, space.transform(raw), model, mh, batch_size, device)

    @property
    def similarity(self) -> str:
        return self.space.similarity

    def __len__(self) -> int:
        return len(self.ids)

    def position(self, cid: int) -> int:
        if not self._pos:
            self._pos = {int(i): p for p, i in enumerate(self.ids.tolist())}
        return self._pos[cid]

    def embed(self, x: Tensor) -> Tensor:
        """Queries (float pixels) → vectors in this searcher's space."""
        raw = raw_vectors(
            x, self.similarity, self.model, batch_size=self.batch_size, device=self.device
        )
        return self.space.transform(raw)

    def search(
        self,
        qv: Tensor,
        qy: Tensor | None,
        k: int,
        *,
        exclude_ids: set[int] | Tensor | None = None,
        chunk: int = 4096,
    ) -> tuple[Tensor, Tensor]:
        """``k`` nearest candidates (their ids and the similarity's distance) of embedded
        queries ``qv``; same class as ``qy`` unless ``qy`` is None; never an excluded id."""
        exclude = None
        if exclude_ids is not None and len(exclude_ids):
            ex = sorted(exclude_ids) if isinstance(exclude_ids, set) else exclude_ids
            exclude = torch.isin(self.ids, torch.as_tensor(ex, dtype=torch.int64))
        sq, idx = knn(
            qv,
            self.vectors,
            k,
            query_groups=qy,
            candidate_groups=None if qy is None else self.labels,
            exclude=exclude,
            chunk=chunk,
        )
        cid = torch.where(idx >= 0, self.ids[idx.clamp(min=0)], torch.full_like(idx, -1))
        return self.space.distance(sq), cid

    def nearest_free(self, qv: Tensor, qy: int | None, used: set[int]) -> int | None:
        """The nearest candidate of one embedded query that is not in ``used`` (or None)."""
        yq = None if qy is None else torch.tensor([qy])
        _, cid = self.search(qv[None], yq, 1, exclude_ids=used)
        c = int(cid[0, 0])
        return None if c < 0 else c


def nearest(
    query_x: Tensor,
    query_y: Tensor | None,
    candidates: CandidateSearcher,
    *,
    k: int = 1,
    exclude_ids: set[int] | Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Batched nearest-candidate search for float pixel queries (see ``CandidateSearcher.search``).

    Returns ``(distance, candidate id)`` of shape (Q, k), nearest first (``-1``/``inf`` padding).
    """
    return candidates.search(candidates.embed(query_x), query_y, k, exclude_ids=exclude_ids)
