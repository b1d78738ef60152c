"""The steps of DESIGN.md's data flow, shared by the CLI and the scenario runner.

Each step is a plain function: artifacts and requests in (loaded objects, or the paths of saved
ones), a new artifact and its stats out (saved when given ``out=``). The CLI verbs parse their
options and call one step; the scenario runner (:mod:`obliviate.scenarios.runner`) wraps the same
steps with its content-keyed cache. Model artifacts of every format — a single checkpoint or a
SISA ensemble (Bourtoule et al., IEEE S&P 2021) — go through :func:`load_artifact` /
:func:`save_artifact`, which dispatch on the artifact (:mod:`obliviate.unlearn.artifact`), so no
step branches on the kind of model.

>>> from obliviate import steps                                              # doctest: +SKIP
>>> out = steps.unlearn_step("finetune", "ckpt/", "req.json", out="unl/")    # doctest: +SKIP
>>> report = steps.audit_step("unl/", "gold/", "ckpt/")                      # doctest: +SKIP
"""

from obliviate.steps.artifacts import (
    ArtifactLike,
    RequestLike,
    artifact_label,
    as_artifact,
    check_starts_from,
    load_artifact,
    load_request,
    resolve_request,
    save_artifact,
)
from obliviate.steps.audit import audit_step, check_same_split, recorded_seconds, shadow_trainer
from obliviate.steps.heal import (
    POOLS,
    HealOutcome,
    heal_step,
    open_spare_pool,
    open_twin_index,
)
from obliviate.steps.train import (
    evaluate_step,
    prepare_data,
    retrain_step,
    train_step,
    train_title,
    train_to,
)
from obliviate.steps.unlearn import UnlearnOutcome, first_nonfinite, unlearn_step
from obliviate.unlearn.artifact import (
    ARTIFACT_FORMATS,
    ArtifactFormat,
    ModelArtifact,
    TrainedArtifact,
    format_for_unlearner,
    format_of_model,
    format_of_path,
)

__all__ = [
    "ARTIFACT_FORMATS",
    "POOLS",
    "ArtifactFormat",
    "ArtifactLike",
    "HealOutcome",
    "ModelArtifact",
    "RequestLike",
    "TrainedArtifact",
    "UnlearnOutcome",
    "artifact_label",
    "as_artifact",
    "audit_step",
    "check_same_split",
    "check_starts_from",
    "evaluate_step",
    "first_nonfinite",
    "format_for_unlearner",
    "format_of_model",
    "format_of_path",
    "heal_step",
    "load_artifact",
    "load_request",
    "open_spare_pool",
    "open_twin_index",
    "prepare_data",
    "recorded_seconds",
    "resolve_request",
    "retrain_step",
    "save_artifact",
    "shadow_trainer",
    "train_step",
    "train_title",
    "train_to",
    "unlearn_step",
]
