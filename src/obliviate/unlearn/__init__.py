"""Unlearning methods behind one contract (see :mod:`obliviate.unlearn.base`).

>>> from obliviate.unlearn import create_unlearner, make_task
>>> u = create_unlearner("finetune", epochs=2)            # doctest: +SKIP
>>> result = u.unlearn(model, make_task(ds, split, req))  # doctest: +SKIP
"""

from obliviate.unlearn import methods as _methods  # noqa: F401  (registers the methods)
from obliviate.unlearn.base import (
    TAGS,
    UNLEARNERS,
    GradientConfig,
    GradientUnlearner,
    Unlearner,
    UnlearnResult,
    ce,
    create_unlearner,
    list_unlearners,
    register_unlearner,
    task_loss,
)
from obliviate.unlearn.task import TensorSet, UnlearnTask, make_task
from obliviate.unlearn.text_task import TextTask, make_text_task, text_loss

__all__ = [
    "TAGS",
    "UNLEARNERS",
    "GradientConfig",
    "GradientUnlearner",
    "TensorSet",
    "TextTask",
    "UnlearnResult",
    "UnlearnTask",
    "Unlearner",
    "ce",
    "create_unlearner",
    "list_unlearners",
    "make_task",
    "make_text_task",
    "register_unlearner",
    "task_loss",
    "text_loss",
]
