"""Knowledge contamination: collateral damage on classes that were NOT requested, ranked by how
similar they are to the requested data (DESIGN.md "Knowledge contamination"; the indirect
unlearning attack of ROKA, arXiv 2603.00436, targets exactly these nearby classes).

Similarity = cosine between each class centroid and the requested data's centroid, both in the
ORIGINAL model's penultimate features. Damage = gold accuracy − unlearned accuracy on that
class's test samples (percentage points; positive = the unlearned model is worse than gold).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from obliviate.errors import ConfigError
from obliviate.metrics._common import METRICS, MetricError, check_xy, features, predictions
from obliviate.metrics.accuracy import per_class_accuracy_from_predictions


@dataclass(frozen=True)
class ClassContamination:
    """One non-requested class: rank 1 is the class most similar to the requested data."""

    cls: int
    rank: int
    similarity: float
    acc_unlearned: float
    acc_gold: float
    delta: float  # acc_unlearned − acc_gold (pp); negative = damage
    n_test: int

    @property
    def damage(self) -> float:
        return -self.delta


@dataclass
class ContaminationResult:
    """Per-class table (sorted by rank) and summary. ``damage_rest``/``contrast`` are ``None``
    exactly when ``skipped`` says why (no class beyond the k nearest)."""

    rows: list[ClassContamination]
    k: int
    requested_classes: list[int]
    damage_nearest: float
    damage_rest: float | None
    contrast: float | None  # damage_nearest − damage_rest
    skipped: str | None = None
    missing_classes: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.skipped is None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "k": self.k,
            "requested_classes": self.requested_classes,
            "damage_nearest": self.damage_nearest,
            "missing_classes": self.missing_classes,
            "table": [
                {
                    "class": r.cls,
                    "rank": r.rank,
                    "similarity": r.similarity,
                    "acc_unlearned": r.acc_unlearned,
                    "acc_gold": r.acc_gold,
                    "delta": r.delta,
                    "n_test": r.n_test,
                }
                for r in self.rows
            ],
        }
        if self.ok:
            out.update(damage_rest=self.damage_rest, contrast=self.contrast)
        else:
            out.update(damage_rest=f"skipped: {self.skipped}", contrast=f"skipped: {self.skipped}")
        return out


@METRICS.register(
    "knowledge_contamination",
    higher_is_better=False,
    unit="percentage points",
    description="accuracy damage vs gold on non-requested classes, ranked by penultimate "
    "centroid similarity (original model) to the requested data; k nearest vs the rest",
    reference="DESIGN.md; ROKA (arXiv 2603.00436)",
)
def knowledge_contamination(
    unlearned: nn.Module,
    gold: nn.Module,
    original: nn.Module,
    x_test: Tensor,
    y_test: Tensor,
    forget_x: Tensor,
    forget_y: Tensor | None = None,
    forget_classes: Sequence[int] | None = None,
    class_ref_x: Tensor | None = None,
    class_ref_y: Tensor | None = None,
    k: int = 3,
    batch_size: int = 1000,
    device: str | torch.device = "cpu",
) -> ContaminationResult:
    """Per-class test-accuracy change vs gold on classes not requested, ranked by similarity.

    Requested classes are ``forget_classes`` if given, else the labels in ``forget_y``. Class
    centroids come from ``class_ref_x/y`` (e.g. the retain set; default: the test set). Classes
    with no test or reference sample are listed in ``missing_classes``. Summary: mean damage on
    the ``k`` most similar classes, on the rest, and their difference.
    """
    check_xy(x_test, y_test, "test set")
    if len(forget_x) == 0:
        raise MetricError("the requested (forget) data is empty")
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    if forget_classes is not None:
        requested = sorted({int(c) for c in forget_classes})
    elif forget_y is not None:
        check_xy(forget_x, forget_y, "forget set")
        requested = sorted(int(c) for c in torch.unique(forget_y))
    else:
        raise ConfigError("give forget_y or forget_classes to say which classes were requested")
    if class_ref_x is None or class_ref_y is None:
        class_ref_x, class_ref_y = x_test, y_test
    check_xy(class_ref_x, class_ref_y, "class reference set")

    return knowledge_contamination_from_outputs(
        pred_unlearned=predictions(unlearned, x_test, batch_size, device),
        pred_gold=predictions(gold, x_test, batch_size, device),
        y_test=y_test,
        requested_features=features(original, forget_x, batch_size, device),
        ref_features=features(original, class_ref_x, batch_size, device),
        ref_y=class_ref_y,
        requested_classes=requested,
        k=k,
    )


def knowledge_contamination_from_outputs(
    pred_unlearned: Tensor,
    pred_gold: Tensor,
    y_test: Tensor,
    requested_features: Tensor,
    ref_features: Tensor,
    ref_y: Tensor,
    requested_classes: Sequence[int],
    k: int = 3,
) -> ContaminationResult:
    """:func:`knowledge_contamination` from precomputed outputs: the two models' predicted test
    labels, the ORIGINAL model's penultimate features of the requested data and of the class
    reference set (with its labels). Used by the audit, which computes each output once."""
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    check_xy(pred_unlearned, y_test, "test predictions (unlearned)")
    check_xy(pred_gold, y_test, "test predictions (gold)")
    if len(requested_features) == 0:
        raise MetricError("the requested (forget) data is empty")
    if len(ref_features) != len(ref_y) or len(ref_y) == 0:
        raise MetricError(
            f"class reference set: {len(ref_features)} feature rows for {len(ref_y)} labels"
        )
    requested = sorted({int(c) for c in requested_classes})
    f_req = requested_features.flatten(1).double().mean(0)
    f_ref = ref_features.flatten(1).double()
    ref_y = ref_y.cpu()
    acc_u = per_class_accuracy_from_predictions(pred_unlearned, y_test)
    acc_g = per_class_accuracy_from_predictions(pred_gold, y_test)
    y_cpu = y_test.cpu()
    all_classes = sorted(set(acc_u) | {int(c) for c in torch.unique(ref_y)})
    candidates, missing = [], []
    for cls in all_classes:
        if cls in requested:
            continue
        if cls not in acc_u or not bool((ref_y == cls).any()):
            missing.append(cls)
            continue
        centroid = f_ref[ref_y == cls].mean(0)
        sim = float(torch.nn.functional.cosine_similarity(centroid, f_req, dim=0))
        candidates.append((sim, cls))
    if not candidates:
        raise MetricError(
            f"no non-requested class has both test and reference samples (requested {requested}, "
            f"missing {missing}); contamination is undefined"
        )
    candidates.sort(key=lambda t: (-t[0], t[1]))
    rows = [
        ClassContamination(
            cls=cls,
            rank=i + 1,
            similarity=sim,
            acc_unlearned=acc_u[cls],
            acc_gold=acc_g[cls],
            delta=acc_u[cls] - acc_g[cls],
            n_test=int((y_cpu == cls).sum()),
        )
        for i, (sim, cls) in enumerate(candidates)
    ]
    near, rest = rows[:k], rows[k:]
    d_near = sum(r.damage for r in near) / len(near)
    if rest:
        d_rest = sum(r.damage for r in rest) / len(rest)
        return ContaminationResult(
            rows, k, requested, d_near, d_rest, d_near - d_rest, None, missing
        )
    reason = f"only {len(rows)} non-requested classes, none beyond the k={k} nearest"
    return ContaminationResult(rows, k, requested, d_near, None, None, reason, missing)
