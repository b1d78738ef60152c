"""Public conformance check for unlearners: :func:`check_unlearner` (scikit-learn's
``check_estimator``).

Every registered method passes these checks (``tests/test_unlearn_conformance.py`` runs them), and
a user runs them on their own :class:`~obliviate.unlearn.Unlearner`::

    from obliviate.testing import check_unlearner
    check_unlearner(MyUnlearner)        # raises ConformanceError naming each failed check

or from a shell, ``python -m obliviate.testing [NAME ...]`` (pass/fail table, exit 1 on failure).

The checks assume a classifier (a model mapping a float tensor batch to logits) but nothing about
the input's shape: the default case is a tiny MLP trained on synthetic vectors (4 Gaussian
classes in [0, 1]^16, 96 training rows each), with the whole of class 0 as the forget set and a
small reserve and validation set. "Forgetting goes the right way" means the mean forget loss
(cross-entropy, or the ``loss_fn`` given) rises above the input model's. Methods that take another
artifact (a SISA ensemble, tag ``needs_ensemble``) get it from their ``conformance_model``
classmethod, built once per case from the trained model and the task. Methods that take only
language models (tag ``text_only``) default to :func:`text_case` instead: ``tiny_llama`` trained
on three ``tofu_synth`` people, forgetting one; on a text task the forget loss is the mean
answer-token cross-entropy (:func:`obliviate.unlearn.text_loss`).

Measured (2 CPU cores, ``OMP_NUM_THREADS=1``): training the default case's MLP takes 1 s on an
idle machine (4 s under a load of 12); all checks of one built-in method then take 0.07-0.6 s
under that load (sisa 1.2 s, including training its 2 × 2 ensemble).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

from torch import nn

from obliviate.errors import ConfigError
from obliviate.testing._case import (
    ConformanceCase,
    default_case,
    default_text_case,
    synthetic_case,
    text_case,
)
from obliviate.testing.checks import (
    CHECK_NAMES,
    CHECKS,
    DEFAULT_TIMEOUT_S,
    Check,
    CheckContext,
    ConformanceError,
    LossFn,
)
from obliviate.unlearn import UNLEARNERS, Unlearner, UnlearnTask


def _resolve(cls_or_name: str | type[Unlearner] | Unlearner, config: Any) -> tuple[type, Any]:
    """The unlearner class and config to check (an instance contributes its own config)."""
    if isinstance(cls_or_name, str):
        return UNLEARNERS.get(cls_or_name), config
    if isinstance(cls_or_name, Unlearner):
        if config is not None:
            raise ConfigError("give either an Unlearner instance or config=, not both")
        return type(cls_or_name), cls_or_name.config
    if isinstance(cls_or_name, type) and issubclass(cls_or_name, Unlearner):
        return cls_or_name, config
    raise ConfigError(
        "check_unlearner takes a registered method name, an Unlearner subclass or an instance, "
        f"got {cls_or_name!r}"
    )


def _case_source(
    task: UnlearnTask | None, model: nn.Module | None, cls: type[Unlearner]
) -> Callable[[], ConformanceCase]:
    if (task is None) != (model is None):
        raise ConfigError(
            "check_unlearner: give both task= and model= (a model trained on the task's "
            "retain ∪ forget data), or neither for the default synthetic case"
        )
    if task is None or model is None:
        return default_text_case if "text_only" in cls.tags else default_case
    if not isinstance(task, UnlearnTask):
        raise ConfigError(f"task must be an UnlearnTask, got {type(task).__name__}")
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be an nn.Module, got {type(model).__name__}")
    case = ConformanceCase(copy.deepcopy(model), task)
    return lambda: case


def iter_checks(
    cls_or_name: str | type[Unlearner] | Unlearner,
    *,
    config: Any = None,
    task: UnlearnTask | None = None,
    model: nn.Module | None = None,
    device: str = "cpu",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    loss_fn: LossFn | None = None,
) -> Iterator[tuple[str, Callable[[], None]]]:
    """``(check name, run)`` for every check that applies to the unlearner; ``run()`` raises
    :class:`ConformanceError` naming the check when it fails. Bad arguments raise here, at once;
    nothing is built or trained until a ``run`` is called, and the checks of one call share the
    case and the standard run.

    Arguments as :func:`check_unlearner`.
    """
    cls, cfg = _resolve(cls_or_name, config)
    ctx = CheckContext(cls, cfg, _case_source(task, model, cls), device, timeout_s, loss_fn)
    ctx.make()  # a bad config is the caller's error (ConfigError), not a failed check
    return iter([(c.name, c.bind(ctx)) for c in CHECKS if c.applies(cls)])


def check_unlearner(
    cls_or_name: str | type[Unlearner] | Unlearner,
    *,
    config: Any = None,
    task: UnlearnTask | None = None,
    model: nn.Module | None = None,
    device: str = "cpu",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    loss_fn: LossFn | None = None,
) -> list[str]:
    """Run every conformance check on an unlearner; raise :class:`ConformanceError` (an
    ``AssertionError``) naming each failed check and why, else return the names of the checks run.

    ``cls_or_name``: a registered method name, an :class:`~obliviate.unlearn.Unlearner` subclass
    (registered or not) or an instance (whose config is checked). ``config``: the method's config
    object or a dict of option overrides. ``task`` and ``model`` (both or neither): your own case
    — a model trained on the task's retain ∪ forget data — instead of the default synthetic MLP
    case (:func:`synthetic_case`; :func:`text_case` for ``text_only`` methods). ``device`` runs
    the methods there (it replaces the task's). ``timeout_s`` bounds each ``unlearn`` call (a hang
    guard). ``loss_fn(model, part) -> float`` replaces the mean cross-entropy (answer tokens on a
    text task) as the forget loss that must rise (and drops the forget-accuracy condition, which
    a text task never checks).
    """
    failures: dict[str, str] = {}
    first: BaseException | None = None
    ran: list[str] = []
    name = ""
    for check_name, run in iter_checks(
        cls_or_name,
        config=config,
        task=task,
        model=model,
        device=device,
        timeout_s=timeout_s,
        loss_fn=loss_fn,
    ):
        ran.append(check_name)
        try:
            run()
        except ConformanceError as e:
            name = e.method
            failures.update(e.failures)
            first = first or e
    if failures:
        raise ConformanceError(name, failures) from first
    return ran


__all__ = [
    "CHECKS",
    "CHECK_NAMES",
    "DEFAULT_TIMEOUT_S",
    "Check",
    "ConformanceCase",
    "ConformanceError",
    "CheckContext",
    "LossFn",
    "check_unlearner",
    "default_case",
    "default_text_case",
    "iter_checks",
    "synthetic_case",
    "text_case",
]
