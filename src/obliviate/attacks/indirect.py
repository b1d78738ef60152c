"""The indirect unlearning attack (ROKA: Shin et al., "Robust Knowledge Unlearning against
Adversaries", arXiv 2603.00436, §1.2 / §1.6 of papers.md).

The adversary wants to damage a security-critical *victim class* t without ever asking to delete
a sample of t: it requests the deletion of legitimate data that the model represents with the
same internal components — a whole neighbouring class c, or samples of other classes close to
t — and lets the knowledge contamination of approximate unlearning do the damage.

Neighbour measures (``by``), all computed with the model under attack on training data:

* ``centroid_cosine``: cosine between class centroids of the penultimate features
  (the DESIGN.md contamination similarity).
* ``confusion``: soft confusion mass, ``½ (E_{x∈t} p_c(x) + E_{x∈c} p_t(x))`` — softmax
  probabilities rather than argmax counts, because a trained model rarely misclassifies its own
  training data and the counts would be mostly zero.
* ``input_x_gradient``: ROKA's contribution vectors at the penultimate layer h,
  ``R(x) = h(x) ⊙ ∂f_y(x)/∂h = h(x) ⊙ W_y`` (exact for the final linear layer), each sample
  towards its own class; similarity = cosine between the classes' mean contribution vectors
  (two classes are neighbours when the same hidden units carry both). ROKA does not publish
  which layer it uses; the penultimate one is the choice of its reproduction sketch (§1.6).

Guarantee of every selection here: the request never contains a sample of the victim class.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from rich.table import Table
from torch import Tensor, nn

from obliviate.attacks.requests import _head_outputs, candidate_ids, resolve_budget, top_k
from obliviate.data.dataset import ImageDataset
from obliviate.data.request import ForgetRequest
from obliviate.data.split import Split
from obliviate.errors import ConfigError, ObliviateError, RequestError
from obliviate.inference import batched_logits
from obliviate.metrics._common import features
from obliviate.unlearn import create_unlearner, make_task
from obliviate.utils import resolve_device

#: The neighbour measures ``by`` may name.
NEIGHBOUR_MEASURES: tuple[str, ...] = ("centroid_cosine", "confusion", "input_x_gradient")
Measure = Literal["centroid_cosine", "confusion", "input_x_gradient"]


def resolve_class(dataset: ImageDataset, c: int | str) -> int:
    """A class index from an index or a class name; :class:`ConfigError` names a bad one."""
    if isinstance(c, str) and not c.lstrip("-").isdigit():
        if c not in dataset.class_names:
            raise ConfigError(
                f"dataset {dataset.name!r} has no class {c!r}; classes: {dataset.class_names}"
            )
        return dataset.class_names.index(c)
    ci = int(c)
    if not 0 <= ci < dataset.num_classes:
        raise ConfigError(
            f"class index {ci} out of range for dataset {dataset.name!r} "
            f"(0..{dataset.num_classes - 1})"
        )
    return ci


def _check_by(by: str) -> None:
    if by not in NEIGHBOUR_MEASURES:
        raise ConfigError(f"by must be one of {list(NEIGHBOUR_MEASURES)}, got {by!r}")


def _reference(
    dataset: ImageDataset, split: Split, max_per_class: int, seed: int
) -> tuple[Tensor, Tensor]:
    """Training ids (at most ``max_per_class`` per class, seeded) and their labels."""
    ids = torch.sort(split.train).values
    y = dataset.labels_of(ids)
    if max_per_class > 0:
        g = torch.Generator().manual_seed(int(seed))
        perm = torch.randperm(len(ids), generator=g)
        # rank of each sample within its class, in permutation order
        ys = y[perm]
        onehot = F.one_hot(ys, dataset.num_classes)
        rank = (onehot.cumsum(0) * onehot).sum(1) - 1
        keep = torch.sort(perm[rank < max_per_class]).values
        ids, y = ids[keep], y[keep]
    return ids, y


def _vectors(
    by: str, model: nn.Module, x: Tensor, y: Tensor, dev: torch.device
) -> tuple[Tensor, Tensor | None]:
    """Per-sample vectors of measure ``by``: features, softmax probabilities or contributions
    (float64, CPU); for ``input_x_gradient`` also the head weight."""
    if by == "centroid_cosine":
        return features(model, x, device=dev).double(), None
    if by == "confusion":
        return torch.softmax(batched_logits(model, x, device=dev).double(), 1), None
    h, _, w, _ = _head_outputs(model, x, dev)
    return h * w[y], w


def _centroids(v: Tensor, y: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Per-class means of ``v`` (rows) and the per-class counts."""
    counts = torch.bincount(y, minlength=num_classes)
    sums = torch.zeros(num_classes, v.shape[1], dtype=v.dtype).index_add_(0, y, v)
    return sums / counts.clamp_min(1).unsqueeze(1).to(v.dtype), counts


def rank_neighbours(
    model: nn.Module,
    dataset: ImageDataset,
    split: Split,
    victim_class: int | str,
    *,
    by: Measure = "centroid_cosine",
    max_per_class: int = 1000,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> list[tuple[int, float]]:
    """Classes other than the victim, most similar first, as ``(class, similarity)``.

    Similarities are computed on the training split (at most ``max_per_class`` samples per class,
    seeded); ties go to the smaller class index. Classes without a training sample are left out.
    """
    _check_by(by)
    t = resolve_class(dataset, victim_class)
    dev = resolve_device(device)
    ids, y = _reference(dataset, split, max_per_class, seed)
    if not bool((y == t).any()):
        raise ConfigError(f"victim class {t} has no training sample in the split")
    x, _ = dataset.tensors(ids)
    v, _ = _vectors(by, model, x, y, dev)
    cent, counts = _centroids(v, y, dataset.num_classes)
    others = [c for c in range(dataset.num_classes) if c != t and counts[c] > 0]
    if not others:
        raise ConfigError(f"no class other than the victim {t} has training samples")
    if by == "confusion":
        sims = [0.5 * float(cent[t, c] + cent[c, t]) for c in others]
    else:
        sims = [float(F.cosine_similarity(cent[t], cent[c], dim=0)) for c in others]
    return sorted(zip(others, sims, strict=True), key=lambda p: (-p[1], p[0]))


@dataclass
class IndirectSelection:
    """The chosen request, the forgotten class (``None`` in ``samples`` mode), the neighbour
    ranking it was chosen from, and details (victim, measure, mode, sizes)."""

    request: ForgetRequest
    forget_class: int | None
    ranking: list[tuple[int, float]]
    details: dict[str, Any] = field(default_factory=dict)


def select_indirect(
    model: nn.Module,
    dataset: ImageDataset,
    split: Split,
    victim_class: int | str,
    *,
    mode: Literal["class", "samples"] = "class",
    by: Measure = "centroid_cosine",
    budget: int | float | None = None,
    seed: int = 0,
    classes: Sequence[int] | None = None,
    controlled_ids: Sequence[int] | Tensor | None = None,
    max_per_class: int = 1000,
    device: str | torch.device = "cpu",
    pick: Literal["nearest", "farthest", "random"] = "nearest",
) -> IndirectSelection:
    """Select a legitimate request that should damage ``victim_class`` once unlearned.

    ``mode="class"``: the nearest class (by ``by``) with allowed training samples; the request is
    all of them, or a seeded random ``budget`` of them. ``mode="samples"``: the ``budget``
    non-victim samples most similar to the victim (cosine of each sample's feature or
    contribution vector to the victim's centroid; for ``confusion``, the sample's probability of
    the victim class). ``classes``/``controlled_ids`` restrict what the attacker may request.
    ``pick`` selects the attack (``nearest``) or one of its controls, as
    :func:`indirect_attack_report` builds them: ``farthest`` (the least similar class with
    allowed samples: all of them in class mode without a budget, else as many as the attack's
    request, seeded) or ``random`` (as many allowed non-victim samples as the attack's request).
    Guarantees: no victim-class sample, only training ids, deterministic under ``seed``.
    """
    _check_by(by)
    t = resolve_class(dataset, victim_class)
    if mode not in ("class", "samples"):
        raise ConfigError(f"mode must be 'class' or 'samples', got {mode!r}")
    dev = resolve_device(device)
    ranking = rank_neighbours(
        model, dataset, split, t, by=by, max_per_class=max_per_class, seed=seed, device=dev
    )
    cand = candidate_ids(
        dataset, split, classes=classes, controlled_ids=controlled_ids, exclude_classes=[t]
    )
    if len(cand) == 0:
        raise RequestError(
            f"no allowed training sample outside the victim class {t} (check classes / "
            "controlled_ids)"
        )
    labels = dataset.labels_of(cand)
    k = None if budget is None else resolve_budget(budget, len(split.train))
    forget_class: int | None = None
    if mode == "class":
        for c, _ in ranking:
            n_c = int((labels == c).sum())
            if n_c and (k is None or n_c >= k):
                forget_class = c
                break
        if forget_class is None:
            raise RequestError(
                f"no neighbouring class has {k or 1} allowed training samples to request"
            )
        pool = cand[labels == forget_class]
        if k is None:
            ids = pool
        else:
            idx = np.random.default_rng([int(seed), 11]).choice(len(pool), k, replace=False)
            ids = pool[torch.from_numpy(np.sort(idx))]
    else:
        if k is None:
            raise ConfigError("mode='samples' needs a budget (count or fraction)")
        if k > len(cand):
            raise RequestError(f"budget {k} exceeds the {len(cand)} allowed non-victim samples")
        ids = top_k(cand, _sample_similarity(by, model, dataset, split, t, cand, seed, dev), k)
    if pick != "nearest":
        ids, forget_class = _control(pick, ids, cand, labels, ranking, mode, k, seed)
    ids = torch.sort(ids).values
    if bool((dataset.labels_of(ids) == t).any()):  # the guarantee, checked
        raise ObliviateError("indirect selection picked a victim-class sample (internal error)")
    meta = {"attack": "indirect", "victim_class": t, "by": by, "mode": mode, "seed": int(seed)}
    if forget_class is not None:
        meta["forget_class"] = forget_class
    name = f"indirect-{by}-{mode}-victim{t}"
    if pick != "nearest":
        meta["pick"] = pick
        name += f"-{pick}"
    req = ForgetRequest(ids, name=name, meta=meta).validate(split)
    details = {
        "victim_class": t,
        "victim_name": dataset.class_names[t],
        "by": by,
        "mode": mode,
        "pick": pick,
        "n": len(ids),
        "per_class": torch.bincount(dataset.labels_of(ids), minlength=dataset.num_classes).tolist(),
    }
    return IndirectSelection(req, forget_class, ranking, details)


def _control(
    pick: str,
    ids: Tensor,
    cand: Tensor,
    labels: Tensor,
    ranking: list[tuple[int, float]],
    mode: str,
    k: int | None,
    seed: int,
) -> tuple[Tensor, int | None]:
    """(ids, forgotten class) of a control request for the attack's request ``ids``."""
    rng = np.random.default_rng([int(seed), 23])
    if pick == "random":
        return cand[torch.from_numpy(rng.choice(len(cand), len(ids), replace=False))], None
    if pick != "farthest":
        raise ConfigError(f"pick must be 'nearest', 'farthest' or 'random', got {pick!r}")
    far = next(c for c, _ in reversed(ranking) if bool((labels == c).any()))
    pool = cand[labels == far]
    if mode == "class" and k is None:
        return pool, far
    return pool[torch.from_numpy(rng.choice(len(pool), min(len(ids), len(pool)), False))], far


def _sample_similarity(
    by: str,
    model: nn.Module,
    dataset: ImageDataset,
    split: Split,
    t: int,
    cand: Tensor,
    seed: int,
    dev: torch.device,
) -> Tensor:
    """Similarity of every candidate sample to the victim class (higher = closer)."""
    x, y = dataset.tensors(cand)
    v, w = _vectors(by, model, x, y, dev)
    if by == "confusion":
        return v[:, t]
    ref_ids, ref_y = _reference(dataset, split, 1000, seed)
    vic = ref_ids[ref_y == t]
    xv, yv = dataset.tensors(vic)
    vv, _ = _vectors(by, model, xv, yv, dev)
    return F.cosine_similarity(v, vv.mean(0, keepdim=True), dim=1)


# ------------------------------------------------------------------------------------- report


@dataclass
class IndirectRow:
    """One (method, request) cell: victim-class test accuracy after unlearning and its drop."""

    method: str
    request: str  # "nearest", "farthest" or "random"
    forget_class: int | None
    n: int
    victim_acc_after: float
    drop: float  # victim_acc_before − victim_acc_after (pp); positive = damage
    test_acc_after: float
    seconds: float


@dataclass
class IndirectReport:
    """Victim-class accuracy drops of the indirect attack vs a farthest-class and a random
    request of the same kind, for each unlearning method."""

    victim_class: int
    victim_name: str
    victim_acc_before: float
    test_acc_before: float
    ranking: list[tuple[int, float]]
    selection: IndirectSelection
    rows: list[IndirectRow]
    class_names: list[str]
    details: dict[str, Any] = field(default_factory=dict)

    def drop(self, method: str, request: str) -> float:
        for r in self.rows:
            if r.method == method and r.request == request:
                return r.drop
        raise KeyError((method, request))

    def table(self) -> Table:
        t = Table(
            title=f"indirect attack on victim class {self.victim_class} ({self.victim_name!r}); "
            f"victim test accuracy before unlearning {self.victim_acc_before:.2f} %"
        )
        for col in ("method", "request", "forgets", "n", "victim acc", "drop (pp)", "test acc"):
            t.add_column(col, justify="right")
        for r in self.rows:
            forgets = "mixed" if r.forget_class is None else self.class_names[r.forget_class]
            t.add_row(
                r.method,
                r.request,
                forgets,
                str(r.n),
                f"{r.victim_acc_after:.2f}",
                f"{r.drop:+.2f}",
                f"{r.test_acc_after:.2f}",
            )
        return t

    def __rich__(self) -> Table:
        return self.table()

    def to_dict(self) -> dict[str, Any]:
        return {
            "victim_class": self.victim_class,
            "victim_name": self.victim_name,
            "victim_acc_before": self.victim_acc_before,
            "test_acc_before": self.test_acc_before,
            "ranking": [[c, s] for c, s in self.ranking],
            "request": self.selection.request.to_dict(),
            "rows": [r.__dict__ for r in self.rows],
            "details": self.details,
        }


def _acc(model: nn.Module, x: Tensor, y: Tensor, dev: torch.device) -> float:
    return 100.0 * float((batched_logits(model, x, device=dev).argmax(1) == y).double().mean())


def indirect_attack_report(
    model: nn.Module,
    dataset: ImageDataset,
    split: Split,
    victim_class: int | str,
    methods: list[str],
    *,
    train_config: dict[str, Any] | None,
    seed: int = 0,
    by: Measure = "centroid_cosine",
    mode: Literal["class", "samples"] = "class",
    budget: int | float | None = None,
    method_options: dict[str, dict[str, Any]] | None = None,
    device: str | torch.device = "cpu",
) -> IndirectReport:
    """Unlearn three requests with each method and measure the victim's test-accuracy drop.

    Requests: ``nearest`` (:func:`select_indirect`), ``farthest`` (the least similar class of the
    ranking — all its training samples in class mode without a budget, else as many as the
    nearest request, seeded) and ``random`` (as many non-victim training samples, uniformly,
    seeded). ``train_config`` is the original's recipe (needed by ``retrain``);
    ``method_options[name]`` overrides a method's defaults. The model is never modified.
    """
    if not methods:
        raise ConfigError("methods: name at least one unlearning method")
    dev = resolve_device(device)
    t = resolve_class(dataset, victim_class)
    opts = dict(method_options or {})
    unknown = sorted(set(opts) - set(methods))
    if unknown:
        raise ConfigError(f"method_options for methods not run: {unknown}")
    sel = select_indirect(
        model, dataset, split, t, mode=mode, by=by, budget=budget, seed=seed, device=dev
    )
    n = len(sel.request)
    cand = candidate_ids(dataset, split, exclude_classes=[t])
    labels = dataset.labels_of(cand)
    far = next(c for c, _ in reversed(sel.ranking) if bool((labels == c).any()))
    far_pool = cand[labels == far]
    rng = np.random.default_rng([int(seed), 23])
    if mode == "class" and budget is None:
        far_ids = far_pool
    else:
        far_ids = far_pool[
            torch.from_numpy(rng.choice(len(far_pool), min(n, len(far_pool)), False))
        ]
    rand_ids = cand[torch.from_numpy(rng.choice(len(cand), n, replace=False))]
    requests = {
        "nearest": (sel.request, sel.forget_class),
        "farthest": (ForgetRequest(torch.sort(far_ids).values, name=f"farthest-{far}"), far),
        "random": (ForgetRequest(torch.sort(rand_ids).values, name="random"), None),
    }
    vic_ids = split.test[dataset.labels_of(split.test) == t]
    if len(vic_ids) == 0:
        raise ConfigError(f"the split's test part has no sample of victim class {t}")
    xv, yv = dataset.tensors(vic_ids)
    xt, yt = dataset.tensors(split.test)
    before, test_before = _acc(model, xv, yv, dev), _acc(model, xt, yt, dev)
    rows: list[IndirectRow] = []
    for m in methods:
        for kind, (req, fc) in requests.items():
            task = make_task(
                dataset, split, req, seed=seed, device=str(dev), train_config=train_config
            )
            t0 = time.perf_counter()
            res = create_unlearner(m, **opts.get(m, {})).unlearn(model, task)
            secs = time.perf_counter() - t0
            after = _acc(res.model, xv, yv, dev)
            rows.append(
                IndirectRow(
                    m, kind, fc, len(req), after, before - after, _acc(res.model, xt, yt, dev), secs
                )
            )
    details = {"by": by, "mode": mode, "seed": int(seed), "farthest_class": far, "n": n}
    return IndirectReport(
        t,
        dataset.class_names[t],
        before,
        test_before,
        sel.ranking,
        sel,
        rows,
        list(dataset.class_names),
        details,
    )
