"""Unlearning metrics: pure functions over models and data, plus the :data:`METRICS` registry.

Every metric declares ``higher_is_better`` in its registry metadata (``None`` when the ideal is
the gold model's value), and never returns a silent ``None``: it raises
:class:`MetricError` with the reason, or its result records ``skipped: reason``. Definitions,
units and directions follow DESIGN.md "Definitions to share".

>>> from obliviate.metrics import METRICS
>>> METRICS.meta("avg_gap")["higher_is_better"]
False
"""

from obliviate.metrics import text  # noqa: F401  (registers the language-model metrics)
from obliviate.metrics._common import METRICS, MetricError
from obliviate.metrics.accuracy import (
    accuracy,
    accuracy_from_predictions,
    per_class_accuracy,
    per_class_accuracy_from_predictions,
    unlearn_accuracy,
)
from obliviate.metrics.contamination import (
    ClassContamination,
    ContaminationResult,
    knowledge_contamination,
    knowledge_contamination_from_outputs,
)
from obliviate.metrics.cost import Timer, median_time, speedup, timer
from obliviate.metrics.divergence import (
    RelearnResult,
    js_divergence,
    js_divergence_from_logits,
    relearn_time,
    weight_distance,
)
from obliviate.metrics.gap import DEFAULT_GAP_KEYS, avg_gap, gaps
from obliviate.metrics.mia import (
    FEATURES,
    LiRAResult,
    PopulationMIAResult,
    balanced_sample,
    features_from_logits,
    lira_offline,
    lira_phi,
    mia_efficacy,
    mia_efficacy_from_logits,
    mia_features,
    population_mia,
    population_mia_from_logits,
    population_mia_from_scores,
    svc_efficacy,
    train_shadow_models,
    youden_threshold,
)
from obliviate.metrics.residual import (
    DEFAULT_C,
    DEFAULT_TAUS,
    ResidualKnowledge,
    residual_curve,
    residual_knowledge,
)

__all__ = [
    "DEFAULT_C",
    "DEFAULT_GAP_KEYS",
    "DEFAULT_TAUS",
    "FEATURES",
    "METRICS",
    "ClassContamination",
    "ContaminationResult",
    "LiRAResult",
    "MetricError",
    "PopulationMIAResult",
    "RelearnResult",
    "ResidualKnowledge",
    "Timer",
    "accuracy",
    "accuracy_from_predictions",
    "avg_gap",
    "balanced_sample",
    "features_from_logits",
    "gaps",
    "js_divergence",
    "js_divergence_from_logits",
    "knowledge_contamination",
    "knowledge_contamination_from_outputs",
    "lira_offline",
    "lira_phi",
    "median_time",
    "mia_efficacy",
    "mia_efficacy_from_logits",
    "mia_features",
    "per_class_accuracy",
    "per_class_accuracy_from_predictions",
    "population_mia",
    "population_mia_from_logits",
    "population_mia_from_scores",
    "relearn_time",
    "residual_curve",
    "residual_knowledge",
    "speedup",
    "svc_efficacy",
    "timer",
    "train_shadow_models",
    "unlearn_accuracy",
    "weight_distance",
    "youden_threshold",
]
