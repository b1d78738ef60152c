"""Similarity search for healing: nearest reserve elements ("twins", "spares") of training elements.

The healing paper (Jasiorski, Klonowski & Woźniak 2025, arXiv 2507.10886; code
``xizula/Model-Healing``, ``shadow-research-*.ipynb``; see ``research/papers.md`` §3.3) replaces an
unlearned element by its most similar element of a reserve held out of training. Its four
similarity measures are all here:

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

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from obliviate._io import atomic_dir, hash_parts, read_json, sha256_file
from obliviate.data.dataset import ImageDataset, _fmt_ids
from obliviate.data.split import Split
from obliviate.errors import CheckpointError, ConfigError, ObliviateError, RequestError
from obliviate.inference import batched_features
from obliviate.utils import resolve_device

SIMILARITIES = ("pixel_l2", "pixel_mahalanobis", "feature_cosine", "feature_mahalanobis")
Similarity = Literal["pixel_l2", "pixel_mahalanobis", "feature_cosine", "feature_mahalanobis"]

INDEX_FORMAT = "obliviate.twin_index/1"
INDEX_TENSORS, INDEX_META = "index.safetensors", "index.json"


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


# ------------------------------------------------------------------------------------ twin index


@dataclass
class TwinIndex:
    """For every training element, its ``k`` most similar reserve elements (same class by
    default), nearest first — the healing paper's *twins*, precomputed.

    ``neighbors`` holds reserve ids (``-1`` when a class has fewer than ``k`` reserve elements),
    ``distances`` the similarity's distance. Keyed by the split hash and, for feature
    similarities, by ``checkpoint_hash`` (the :func:`model_state_hash` of the weights whose
    features it holds, unless the caller names another key).
    """

    similarity: str
    train_ids: Tensor
    train_labels: Tensor
    neighbors: Tensor
    distances: Tensor
    reserve_ids: Tensor
    space: SimilaritySpace
    split_hash: str
    dataset_fingerprint: str
    checkpoint_hash: str | None = None
    same_class: bool = True
    meta: dict[str, Any] = field(default_factory=dict)
    _pos: dict[int, int] = field(default_factory=dict, repr=False)
    _searcher: CandidateSearcher | None = field(default=None, repr=False)

    @property
    def k(self) -> int:
        return int(self.neighbors.shape[1])

    @classmethod
    def build(
        cls,
        dataset: ImageDataset,
        split: Split,
        *,
        similarity: str,
        model: nn.Module | None = None,
        checkpoint_hash: str | None = None,
        same_class: bool = True,
        k: int = 8,
        shrinkage: str | float = "ledoit_wolf",
        batch_size: int = 1024,
        chunk: int = 4096,
        device: str = "cpu",
    ) -> TwinIndex:
        """Index every ``split.train`` element against ``split.reserve`` with one similarity.

        Feature similarities embed with ``model`` (pass the *original* model). ``checkpoint_hash``
        defaults to :func:`model_state_hash` of ``model``. Cost: one forward pass per train and
        reserve element (feature similarities) plus one chunked matrix product per class.
        """
        split.check(dataset)
        check_similarity(similarity)
        if len(split.reserve) == 0:
            raise ConfigError(
                "the split has no reserve: twins come from elements held out of training; make "
                "the split with make_split(..., reserve=N)"
            )
        feat = uses_features(similarity)
        if feat and model is None:
            raise ConfigError(
                f"similarity {similarity!r} needs model= (the original model whose penultimate "
                "features are compared)"
            )
        searcher = CandidateSearcher.build(
            dataset,
            split.reserve,
            similarity,
            model=model,
            shrinkage=shrinkage,
            batch_size=batch_size,
            device=device,
        )
        xt, yt = dataset.tensors(split.train)
        dist, nb = searcher.search(searcher.embed(xt), yt if same_class else None, k, chunk=chunk)
        ck = (checkpoint_hash or searcher.model_hash) if feat else checkpoint_hash
        return cls(
            similarity=similarity,
            train_ids=split.train.clone(),
            train_labels=yt,
            neighbors=nb,
            distances=dist,
            reserve_ids=split.reserve.clone(),
            space=searcher.space,
            split_hash=split.hash,
            dataset_fingerprint=dataset.fingerprint(),
            checkpoint_hash=ck,
            same_class=same_class,
            meta={"n_train": len(split.train), "n_reserve": len(split.reserve)},
            _searcher=searcher,
        )

    def rows(self, ids: Tensor | Sequence[int]) -> Tensor:
        """Row positions of training ids; ids not in the index raise :class:`RequestError`."""
        if not self._pos:
            self._pos = {int(i): p for p, i in enumerate(self.train_ids.tolist())}
        ids_l = torch.as_tensor(ids, dtype=torch.int64).reshape(-1).tolist()
        missing = [i for i in ids_l if i not in self._pos]
        if missing:
            raise RequestError(
                f"{len(missing)} id(s) are not training elements of this twin index "
                f"(split {self.split_hash[:12]}): {_fmt_ids(missing)}"
            )
        return torch.as_tensor([self._pos[i] for i in ids_l], dtype=torch.int64)

    def twins_of(self, ids: Tensor | Sequence[int]) -> Tensor:
        """The (len(ids), k) ranked reserve ids of training ids (not unique across ids)."""
        return self.neighbors[self.rows(ids)]

    def check(
        self,
        *,
        split: Split | None = None,
        dataset: ImageDataset | None = None,
        expect_checkpoint_hash: str | None = None,
        origin: str = "twin index",
    ) -> None:
        """Raise :class:`CheckpointError` if the index belongs to another split, dataset content
        or (feature similarities) other weights than expected."""
        if split is not None and split.hash != self.split_hash:
            raise CheckpointError(
                f"{origin} was built for split {self.split_hash[:12]}, not split {split.hash[:12]}"
            )
        if dataset is not None and dataset.fingerprint() != self.dataset_fingerprint:
            raise CheckpointError(
                f"{origin} was built on dataset content {self.dataset_fingerprint[:12]}, not "
                f"{dataset.fingerprint()[:12]}"
            )
        if (
            expect_checkpoint_hash is not None
            and uses_features(self.similarity)
            and expect_checkpoint_hash != self.checkpoint_hash
        ):
            raise CheckpointError(
                f"{origin} holds {self.similarity} features of checkpoint "
                f"{str(self.checkpoint_hash)[:12]}, but checkpoint {expect_checkpoint_hash[:12]} "
                "was expected; rebuild the index with that model's features"
            )

    def searcher(
        self,
        dataset: ImageDataset,
        model: nn.Module | None = None,
        *,
        batch_size: int = 1024,
        device: str = "cpu",
    ) -> CandidateSearcher:
        """The reserve embedded in this index's space (built on first use, then cached)."""
        if self._searcher is not None:
            return self._searcher
        self.check(dataset=dataset)
        if uses_features(self.similarity):
            if model is None:
                raise ConfigError(
                    f"the twin index compares {self.similarity} features: pass the model whose "
                    "features it holds (model=) to search beyond its stored neighbours"
                )
            self.check(expect_checkpoint_hash=model_state_hash(model))
        self._searcher = CandidateSearcher.build(
            dataset,
            self.reserve_ids,
            self.similarity,
            model=model,
            space=self.space,
            batch_size=batch_size,
            device=device,
        )
        return self._searcher

    # -------------------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index atomically: folder ``path`` with safetensors + a JSON sidecar."""
        import safetensors.torch

        path = Path(path)
        tensors = {
            "train_ids": self.train_ids.contiguous(),
            "train_labels": self.train_labels.contiguous(),
            "neighbors": self.neighbors.contiguous(),
            "distances": self.distances.contiguous(),
            "reserve_ids": self.reserve_ids.contiguous(),
            **self.space.tensors(),
        }
        with atomic_dir(path) as tmp:
            safetensors.torch.save_file(tensors, str(tmp / INDEX_TENSORS))
            meta = {
                "format": INDEX_FORMAT,
                "similarity": self.similarity,
                "split_hash": self.split_hash,
                "dataset_fingerprint": self.dataset_fingerprint,
                "checkpoint_hash": self.checkpoint_hash,
                "same_class": self.same_class,
                "k": self.k,
                "shrinkage": self.space.shrinkage,
                "tensors_sha256": sha256_file(tmp / INDEX_TENSORS),
                "meta": self.meta,
            }
            (tmp / INDEX_META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        expect_checkpoint_hash: str | None = None,
        expect_split_hash: str | None = None,
        expect_similarity: str | None = None,
    ) -> TwinIndex:
        """Read and verify an index folder; refuse a corrupt file, another split, another
        similarity, or (feature similarities) features of other weights than expected."""
        import safetensors.torch
        from safetensors import SafetensorError

        path = Path(path)
        mp, tp = path / INDEX_META, path / INDEX_TENSORS
        if not path.is_dir():
            raise CheckpointError(
                f"twin index {path} does not exist (expected a folder with {INDEX_META})"
            )
        meta = read_json(
            mp,
            f"twin index {path}: {INDEX_META}",
            CheckpointError,
            missing="is missing",
            corrupt="is corrupt",
        )
        if not isinstance(meta, dict) or meta.get("format") != INDEX_FORMAT:
            raise CheckpointError(f"twin index {path}: not a {INDEX_FORMAT} index")
        if not tp.exists() or sha256_file(tp) != meta.get("tensors_sha256"):
            raise CheckpointError(
                f"twin index {path}: {INDEX_TENSORS} is missing, corrupt or truncated"
            )
        try:
            t = safetensors.torch.load_file(str(tp))
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"twin index {path}: cannot read {INDEX_TENSORS}: {e}") from None
        sim = check_similarity(meta["similarity"])
        space = SimilaritySpace(sim, t.get("space_mean"), t.get("space_whiten"), meta["shrinkage"])
        idx = cls(
            similarity=sim,
            train_ids=t["train_ids"],
            train_labels=t["train_labels"],
            neighbors=t["neighbors"],
            distances=t["distances"],
            reserve_ids=t["reserve_ids"],
            space=space,
            split_hash=meta["split_hash"],
            dataset_fingerprint=meta["dataset_fingerprint"],
            checkpoint_hash=meta["checkpoint_hash"],
            same_class=bool(meta["same_class"]),
            meta=dict(meta.get("meta") or {}),
        )
        if expect_similarity is not None and expect_similarity != sim:
            raise CheckpointError(
                f"twin index {path} uses similarity {sim!r}, not {expect_similarity!r}"
            )
        if expect_split_hash is not None and expect_split_hash != idx.split_hash:
            raise CheckpointError(
                f"twin index {path} was built for split {idx.split_hash[:12]}, not split "
                f"{expect_split_hash[:12]}"
            )
        idx.check(expect_checkpoint_hash=expect_checkpoint_hash, origin=f"twin index {path}")
        return idx
