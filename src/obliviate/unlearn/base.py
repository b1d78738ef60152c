"""The unlearner contract (DESIGN.md): a config dataclass + ``unlearn(model, task)``.

* :class:`Unlearner` — ``unlearn`` deep-copies the model, seeds every RNG with ``task.seed``,
  checks the task against the method's tags, times the call and returns
  :class:`UnlearnResult` (new model, stats). The input model is never modified.
* :class:`GradientUnlearner` — the fine-tuning family: a method is a config plus one
  ``compute_loss`` override (OpenUnlearning style); the loop, optimiser, schedule and batching
  are shared.

Two model kinds share the contract: image classifiers (batches ``(x, y)``) and causal language
models on a text task (batches ``(x, y, mask)``, :mod:`obliviate.unlearn.text_task`).
:func:`task_loss` (alias :func:`ce`) is the one loss that serves both: cross-entropy of the logits
for a classifier, mean answer-token cross-entropy for a language model. A method that can take a
text task carries the tag ``supports_text``; one that takes only text, ``text_only``; any other
pairing is refused with a :class:`ConfigError` naming the method and the model kind.

Register a method with ``@register_unlearner("name", tags={...})`` on its class.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from obliviate.config import EPOCHS_MAX, LR_MAX, STEPS_MAX, build_config, opt, validate_config
from obliviate.errors import ConfigError, RequestError
from obliviate.inference import batched_logits
from obliviate.registry import Registry
from obliviate.train import lr_lambda, make_optimizer
from obliviate.unlearn.task import TensorSet, UnlearnTask
from obliviate.unlearn.text_task import answer_token_ce, token_accuracy
from obliviate.utils import ProgressBar, resolve_device, seed_everything

#: Tags a method may carry. ``needs_retain``/``needs_reserve``: reads those sets;
#: ``exact``: the result equals retraining in distribution; ``needs_ensemble``: works on a SISA
#: ensemble artifact rather than one model; ``supports_text``: also takes a text task (a causal
#: language model); ``text_only``: takes only text tasks.
TAGS = frozenset(
    {
        "needs_retain",
        "needs_reserve",
        "exact",
        "needs_ensemble",
        "experimental",
        "supports_text",
        "text_only",
    }
)

UNLEARNERS: Registry[type[Unlearner]] = Registry("unlearning method")


def register_unlearner(
    name: str,
    *,
    tags: set[str] | frozenset[str] = frozenset(),
    paper: str = "",
    aliases: tuple[str, ...] = (),
) -> Callable[[type[Unlearner]], type[Unlearner]]:
    """Class decorator: register an :class:`Unlearner` subclass under ``name`` with its tags;
    ``aliases`` are other names :func:`create_unlearner` accepts (not listed separately)."""
    tags = frozenset(tags) | ({"supports_text"} if "text_only" in tags else frozenset())
    bad = set(tags) - TAGS
    if bad:
        raise ValueError(f"unknown tags {sorted(bad)}; known: {sorted(TAGS)}")

    def deco(cls: type[Unlearner]) -> type[Unlearner]:
        cls.name = name
        cls.tags = tags
        cls.paper = paper
        out = UNLEARNERS.register(name, tags=sorted(tags), paper=paper)(cls)
        for a in aliases:
            UNLEARNERS.alias(a, name)
        return out

    return deco


def create_unlearner(name: str, config: Any = None, **overrides: Any) -> Unlearner:
    """Instantiate the registered method ``name`` with its config (+ keyword overrides)."""
    return UNLEARNERS.get(name)(config, **overrides)


def list_unlearners(kind: Literal["image", "text"] | None = None) -> list[str]:
    """Registered method names (aliases excluded); ``kind`` keeps those that take that model
    kind: ``"image"`` (classifiers: not ``text_only``), ``"text"`` (tagged ``supports_text``)."""
    names = UNLEARNERS.names()
    if kind is None:
        return names
    if kind not in ("image", "text"):
        raise ConfigError(f"kind must be 'image', 'text' or None, got {kind!r}")
    if kind == "text":
        return [n for n in names if "supports_text" in UNLEARNERS.get(n).tags]
    return [n for n in names if "text_only" not in UNLEARNERS.get(n).tags]


@dataclass
class UnlearnResult:
    """The unlearned model (a new object, eval mode) and what it cost."""

    model: nn.Module
    stats: dict[str, Any]


class Unlearner(ABC):
    """Base class. Subclasses set ``Config`` (a dataclass) and implement :meth:`_unlearn`."""

    name: ClassVar[str] = ""
    tags: ClassVar[frozenset[str]] = frozenset()
    paper: ClassVar[str] = ""
    Config: ClassVar[type] = type(None)

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        if config is not None and not isinstance(config, self.Config):
            raise ConfigError(
                f"{self.name}: config must be a {self.Config.__name__}, got {type(config).__name__}"
            )
        try:
            self.config = validate_config(build_config(self.Config, overrides, base=config))
        except ConfigError as e:  # name the method: "ssd: alpha must be … > 0, got nan"
            raise ConfigError(f"{self.name}: {e}") from None

    # scikit-learn style introspection -----------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    def clone(self, **overrides: Any) -> Unlearner:
        return type(self)(copy.deepcopy(self.config), **overrides)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"

    @classmethod
    def conformance_model(cls, model: nn.Module, task: UnlearnTask) -> nn.Module:
        """The model this method takes, built from a plain trained model (for the conformance
        suite). Methods working on another artifact (a SISA ensemble) override this."""
        return model

    # the contract ----------------------------------------------------------------------------
    def check_task(self, task: UnlearnTask) -> None:
        """Raise if the task lacks what this method's tags say it needs, or is of a model kind
        the method cannot take (:class:`ConfigError` naming both)."""
        if task.is_text and "supports_text" not in self.tags:
            raise ConfigError(
                f"method {self.name!r} does not support text tasks (causal language models); "
                f"methods that do: {list_unlearners('text')}"
            )
        if not task.is_text and "text_only" in self.tags:
            raise ConfigError(
                f"method {self.name!r} takes only text tasks (causal language models), not an "
                "image classifier task; build one with make_text_task"
            )
        if "needs_retain" in self.tags and not task.has_retain:
            raise RequestError(f"method {self.name!r} needs retain data, but the task has none")
        if "needs_reserve" in self.tags and not task.has_reserve:
            raise RequestError(
                f"method {self.name!r} needs a reserve (spare pool); the task has none"
            )

    def unlearn(self, model: nn.Module, task: UnlearnTask) -> UnlearnResult:
        """Return a new model with ``task.forget`` unlearned; ``model`` itself is untouched.

        Deterministic: every RNG is seeded with ``task.seed`` before the method runs.
        """
        self.check_task(task)
        dev = resolve_device(task.device)
        new = copy.deepcopy(model).to(dev)
        seed_everything(task.seed)
        t0 = time.perf_counter()
        stats = self._unlearn(new, task) or {}
        if dev.type == "cuda":  # queued kernels belong to this method's time
            torch.cuda.synchronize(dev)
        stats = {"method": self.name, "seconds": time.perf_counter() - t0, **stats}
        new.eval()
        for p in new.parameters():
            p.grad = None
        return UnlearnResult(new, stats)

    @abstractmethod
    def _unlearn(self, model: nn.Module, task: UnlearnTask) -> dict[str, Any] | None:
        """Modify ``model`` (already a private copy on the task's device) in place."""


# --------------------------------------------------------------------------- fine-tuning family


@dataclass
class GradientConfig:
    """Shared optimisation fields of the fine-tuning family."""

    epochs: int = opt(
        5, "Passes over the driving set (see each method's driver).", ge=0, le=EPOCHS_MAX
    )
    lr: float = opt(0.01, "Learning rate.", gt=0, le=LR_MAX)
    batch_size: int = opt(128, "Mini-batch size (forget and retain batches alike).", ge=1)
    optimizer: Literal["sgd", "adam"] = opt("sgd", "Optimiser.")
    momentum: float = opt(0.9, "SGD momentum.", ge=0, lt=1)
    weight_decay: float = opt(5e-4, "Weight decay.", ge=0)
    schedule: Literal["constant", "cosine"] = opt("cosine", "LR schedule, stepped per batch.")
    grad_clip: float = opt(0.0, "Clip the global gradient norm (0 disables).", ge=0)
    max_steps: int = opt(0, "Stop after this many steps (0: no cap).", ge=0, le=STEPS_MAX)
    stop_forget_acc: float = opt(
        -1.0,
        "Stop once the forget accuracy on the request (percent, true labels) is <= this "
        "(negative disables). Matched forgetting (ROKA, arXiv 2603.00436): set it to gold's "
        "forget accuracy plus a margin, e.g. with a scenario's `matched_forgetting`.",
        le=100,
    )
    eval_every: int = opt(
        1, "Check stop_forget_acc every this many steps (one pass over the request each).", ge=1
    )
    stop_at_val_acc: bool = opt(
        False,
        "Gold-free matched forgetting: stop once the forget accuracy is <= the input model's "
        "accuracy on the task's validation images of the request's classes (weighted by the "
        "request's class mix), i.e. once the request looks like unseen data. Needs validation "
        "data; excludes stop_forget_acc.",
    )

    def __post_init__(self) -> None:
        validate_config(self)
        if self.stop_at_val_acc and self.stop_forget_acc >= 0:
            raise ConfigError(
                "set either stop_forget_acc (a fixed threshold) or stop_at_val_acc (the "
                f"validation accuracy), not both; got stop_forget_acc={self.stop_forget_acc}"
            )


class ForgetStop:
    """The matched-forgetting stopping rule shared by the fine-tuning family.

    ``check(model, step)`` returns True once the forget accuracy (percent, on the whole request,
    eval mode, true labels) is ``<= threshold``; it is evaluated every ``cfg.eval_every`` steps
    and never when the rule is disabled (negative threshold). The threshold is
    ``cfg.stop_forget_acc``, or with ``cfg.stop_at_val_acc`` the accuracy of ``model`` (the input
    model, before any step) on the validation images of the request's classes, each class
    weighted by its share of the request. ``stats`` gives ``stopped_early``, the threshold and
    the last measured ``forget_acc_at_stop`` (None if never measured).
    """

    def __init__(
        self,
        threshold: float,
        every: int,
        task: UnlearnTask,
        model: nn.Module | None = None,
        at_val_acc: bool = False,
    ) -> None:
        self.threshold = threshold
        self.every = every
        self.forget = task.forget
        self.device = resolve_device(task.device)
        self.stopped = False
        self.last: float | None = None
        if at_val_acc:
            if model is None:
                raise ConfigError("stop_at_val_acc needs the input model")
            self.threshold = self._val_accuracy(model, task)

    @classmethod
    def from_config(cls, cfg: GradientConfig, task: UnlearnTask, model: nn.Module) -> ForgetStop:
        """The rule of a fine-tuning-family config (``stop_forget_acc``, ``eval_every``,
        ``stop_at_val_acc``) for ``model``, the input model of the run."""
        return cls(cfg.stop_forget_acc, cfg.eval_every, task, model, cfg.stop_at_val_acc)

    def _val_accuracy(self, model: nn.Module, task: UnlearnTask) -> float:
        if task.is_text:
            raise ConfigError(
                "stop_at_val_acc needs class labels; it is not defined for text tasks (use "
                "stop_forget_acc: the answer-token accuracy in percent)"
            )
        val = task.val
        if val is None or len(val) == 0:
            raise RequestError(
                "stop_at_val_acc needs validation data in the task (split with val > 0)"
            )
        classes, counts = torch.unique(self.forget.y, return_counts=True)
        missing = [int(c) for c in classes if not bool((val.y == c).any())]
        if missing:
            raise RequestError(
                f"stop_at_val_acc: the validation set has no images of the request's classes "
                f"{missing}"
            )
        hit = batched_logits(model, val.x, device=self.device).argmax(1) == val.y
        per_class = torch.stack([hit[val.y == c].double().mean() for c in classes])
        return 100.0 * float((per_class * counts.double()).sum() / counts.sum())

    @property
    def enabled(self) -> bool:
        return self.threshold >= 0 and len(self.forget) > 0

    def check(self, model: nn.Module, step: int) -> bool:
        if not self.enabled or step % self.every:
            return False
        if self.forget.is_text:  # the percent of answer tokens predicted (teacher forcing)
            self.last = token_accuracy(model, self.forget)
        else:
            pred = batched_logits(model, self.forget.x, device=self.device).argmax(1)
            self.last = 100.0 * float((pred == self.forget.y).double().mean())
        self.stopped = self.last <= self.threshold
        return self.stopped

    def stats(self) -> dict[str, Any]:
        if not self.enabled:
            return {}
        return {
            "stopped_early": self.stopped,
            "stop_threshold": self.threshold,
            "forget_acc_at_stop": self.last,
        }


class GradientUnlearner(Unlearner):
    """Fine-tuning family: iterate over the driving set, call :meth:`compute_loss`, step.

    ``driver`` is ``"retain"`` (an epoch is a pass over retain; a forget batch is drawn alongside
    each retain batch, cycling) or ``"forget"`` (the reverse). Subclasses override
    :meth:`compute_loss` and, if needed, :meth:`setup` (e.g. to freeze layers or build masks)
    and :meth:`after_step` (e.g. to add noise or re-apply a mask).
    """

    driver: ClassVar[Literal["retain", "forget"]] = "retain"
    uses_forget: ClassVar[bool] = True

    def setup(self, model: nn.Module, task: UnlearnTask) -> None:
        """Hook run once before the loop."""

    def trainable(self, model: nn.Module) -> list[nn.Parameter]:
        return [p for p in model.parameters() if p.requires_grad]

    @abstractmethod
    def compute_loss(
        self,
        model: nn.Module,
        forget: tuple[torch.Tensor, torch.Tensor] | None,
        retain: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> torch.Tensor:
        """The loss to *minimise* on one step."""

    def after_step(self, model: nn.Module, step: int) -> None:
        """Hook run after every optimiser step."""

    def _unlearn(self, model: nn.Module, task: UnlearnTask) -> dict[str, Any]:
        cfg: GradientConfig = self.config  # type: ignore[assignment]
        dev = resolve_device(task.device)
        g = torch.Generator().manual_seed(task.seed)
        self._generator = g
        self._task = task
        self.setup(model, task)
        forget = task.forget if self.uses_forget else None
        retain = task.retain if "needs_retain" in self.tags else None
        drive = retain if self.driver == "retain" else forget
        other = forget if self.driver == "retain" else retain
        if drive is None or len(drive) == 0:
            raise RequestError(f"method {self.name!r}: its driving set ({self.driver}) is empty")
        params = self.trainable(model)
        opt_ = make_optimizer(params, cfg)
        bs = cfg.batch_size
        spe = math.ceil(len(drive) / bs)
        total = spe * cfg.epochs if cfg.max_steps <= 0 else min(spe * cfg.epochs, cfg.max_steps)
        sched = torch.optim.lr_scheduler.LambdaLR(opt_, lr_lambda(cfg.schedule, total))
        other_iter = _cycle(other, bs, g) if other is not None and len(other) else None
        step, loss_sum = 0, 0.0
        stop = ForgetStop.from_config(cfg, task, model)
        model.train()
        with ProgressBar(total, self.name, enabled=False) as bar:
            while step < total:
                perm = torch.randperm(len(drive), generator=g)
                for i in range(0, len(drive), bs):
                    if step >= total:
                        break
                    b_drive = drive.batch(perm[i : i + bs], dev)
                    b_other = next(other_iter) if other_iter is not None else None
                    if b_other is not None:
                        b_other = tuple(t.to(dev) for t in b_other)
                    fb, rb = (b_other, b_drive) if self.driver == "retain" else (b_drive, b_other)
                    loss = self.compute_loss(model, fb, rb)
                    opt_.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.grad_clip > 0:
                        nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                    opt_.step()
                    sched.step()
                    self.after_step(model, step)
                    loss_sum += float(loss.detach())
                    step += 1
                    bar.advance()
                    if not math.isfinite(loss_sum):
                        raise FloatingPointError(f"method {self.name!r} diverged at step {step}")
                    if stop.check(model, step):
                        total = step
                        break
        return {"steps": step, "mean_loss": loss_sum / max(1, step), **stop.stats()}


def _cycle(part: TensorSet, bs: int, g: torch.Generator):
    """Endless shuffled batches of ``part`` (reshuffled at every pass)."""
    while True:
        perm = torch.randperm(len(part), generator=g)
        for i in range(0, len(part), bs):
            yield part.batch(perm[i : i + bs])


def task_loss(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The training loss of ``model`` on one batch, whatever the model kind: cross-entropy of the
    logits on an image batch ``(x, y)``; on a text batch ``(x, y, mask)``, the mean next-token
    cross-entropy over the answer tokens (:func:`~obliviate.unlearn.text_task.answer_token_ce`).
    """
    if len(batch) == 3:
        return answer_token_ce(model, batch)
    return F.cross_entropy(model(batch[0]), batch[1])


def ce(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Cross-entropy of ``model`` on a batch: :func:`task_loss` (answer tokens for text)."""
    return task_loss(model, batch)
