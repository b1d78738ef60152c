"""The named conformance checks run by :func:`obliviate.testing.check_unlearner`.

Each check takes a :class:`CheckContext` (the unlearner class and config, the case, the device
and the hang guard) and raises on failure. Several checks inspect one shared standard run (seed
0, full task) so that a slow method is run once, not once per check.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from obliviate.errors import ConfigError, RequestError
from obliviate.inference import batched_logits
from obliviate.metrics import accuracy
from obliviate.testing._case import ConformanceCase
from obliviate.unlearn import TAGS, TensorSet, Unlearner, UnlearnResult, UnlearnTask, text_loss

#: Default hang guard of one ``unlearn`` call, in seconds (not a speed requirement).
DEFAULT_TIMEOUT_S = 300.0

LossFn = Callable[[nn.Module, TensorSet], float]


class ConformanceError(AssertionError):
    """One or more conformance checks failed; ``failures`` maps each check's name to why."""

    def __init__(self, method: str, failures: dict[str, str]) -> None:
        self.method = method
        self.failures = dict(failures)
        lines = [f"  {name}: {why}" for name, why in self.failures.items()]
        super().__init__(
            f"unlearner {method!r} failed {len(self.failures)} conformance check(s) "
            f"({', '.join(self.failures)}):\n" + "\n".join(lines)
        )


ConformanceError.__module__ = "obliviate.testing"  # its public home


class _Fail(AssertionError):
    """A check's expectation did not hold (the message says which and why)."""


def _expect(cond: bool, msg: str) -> None:
    if not cond:
        raise _Fail(msg)


def _expect_raises(exc: type[Exception], pattern: str, fn: Callable[[], Any], what: str) -> None:
    """``fn()`` must raise ``exc`` with a message matching ``pattern`` (a clear error)."""
    try:
        fn()
    except exc as e:
        _expect(
            re.search(pattern, str(e)) is not None,
            f"{what}: raised {type(e).__name__} but its message does not mention {pattern!r}: {e}",
        )
        return
    raise _Fail(f"{what}: expected {exc.__name__} (mentioning {pattern!r}), nothing was raised")


# ------------------------------------------------------------------------------ check context


def _guarded(fn: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Run ``fn`` in a daemon thread; fail if it has not returned after ``timeout_s`` (a hang
    guard: the thread cannot be killed and is abandoned). Exceptions propagate unchanged."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # re-raised in the caller's thread below
            box["error"] = e

    th = threading.Thread(target=target, name=f"obliviate-check {what}", daemon=True)
    th.start()
    th.join(timeout_s)
    if th.is_alive():
        raise _Fail(f"{what} did not finish within {timeout_s:g} s (hang guard)")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _device_of(model: nn.Module) -> torch.device:
    """Where ``model`` lives (its first parameter or buffer; the CPU if it has neither)."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _differing(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    return [k for k in a if k not in b or not torch.equal(a[k], b[k])]


@dataclass
class _Run:
    """One ``unlearn`` call and what the checks compare against."""

    model: nn.Module
    before: dict[str, torch.Tensor]
    grads_before: list[bool]
    loss_before: float
    task: UnlearnTask
    result: UnlearnResult
    seconds: float


class CheckContext:
    """What every check of one unlearner shares: how to build it, the case, and the memoised
    standard run (seed 0) that several checks inspect."""

    def __init__(
        self,
        cls: type[Unlearner],
        config: Any,
        case: Callable[[], ConformanceCase],
        device: str,
        timeout_s: float,
        loss_fn: LossFn | None,
    ) -> None:
        self.cls, self.config, self._case, self.device = cls, config, case, device
        self.timeout_s, self.custom_loss = timeout_s, loss_fn is not None
        self.loss_fn = loss_fn or self._cross_entropy
        self._run: _Run | Exception | None = None

    @property
    def name(self) -> str:
        return self.cls.name or self.cls.__name__

    @property
    def case(self) -> ConformanceCase:
        return self._case()

    def make(self, **overrides: Any) -> Unlearner:
        """A fresh unlearner with the checked config (+ overrides)."""
        if isinstance(self.config, dict):
            return self.cls(None, **{**self.config, **overrides})
        return self.cls(copy.deepcopy(self.config), **overrides)

    def model(self) -> nn.Module:
        return self.case.model_for(self.cls, self.device)

    def task(self, seed: int | None = None, **kw: Any) -> UnlearnTask:
        return self.case.fresh_task(seed, device=self.device, **kw)

    def unlearn(self, u: Unlearner, model: nn.Module, task: UnlearnTask) -> UnlearnResult:
        return _guarded(lambda: u.unlearn(model, task), self.timeout_s, f"{self.name}.unlearn")

    def _cross_entropy(self, model: nn.Module, part: TensorSet) -> float:
        if part.is_text:  # a causal LM: mean cross-entropy over the answer tokens
            return text_loss(model, part)
        with torch.no_grad():
            logits = batched_logits(model, part.x, device=_device_of(model))
        return float(F.cross_entropy(logits, part.y))

    def run(self) -> _Run:
        """The standard run (default seed, full task), made once and shared by the checks; if it
        raised, every check that asks for it raises the same error."""
        if self._run is None:
            try:
                self._run = self._standard_run()
            except Exception as e:
                self._run = e
        if isinstance(self._run, Exception):
            raise self._run
        return self._run

    def _standard_run(self) -> _Run:
        u, model, task = self.make(), self.model(), self.task()
        before = _state(model)
        grads = [p.requires_grad for p in model.parameters()]
        loss_before = self.loss_fn(model, task.forget)
        t0 = time.perf_counter()
        res = self.unlearn(u, model, task)
        return _Run(model, before, grads, loss_before, task, res, time.perf_counter() - t0)


# ----------------------------------------------------------------------------------- the checks


def _check_config(ctx: CheckContext) -> None:
    u = ctx.make()
    _expect(dataclasses.is_dataclass(u.config), f"config is not a dataclass: {u.config!r}")
    fields = dataclasses.fields(u.config)
    _expect(bool(fields), "the config has no hyper-parameters")
    for f in fields:
        _expect(bool(f.metadata.get("help")), f"option {f.name!r} has no help text (use opt())")
    _expect(u.clone().get_params() == u.get_params(), "clone().get_params() != get_params()")
    _expect_raises(
        ConfigError, "no_such_option", lambda: ctx.cls(no_such_option=1), "an unknown option"
    )
    _expect(bool(ctx.cls.paper), "the method does not cite its paper (register_unlearner paper=)")
    doc = ctx.cls.__doc__ or ""
    _expect(len(doc.strip()) > 20, "the class has no docstring (or one under 20 characters)")


def _check_finishes(ctx: CheckContext) -> None:
    run = ctx.run()  # a hang fails inside, after timeout_s
    secs = run.result.stats.get("seconds")
    _expect(
        isinstance(secs, float) and 0 <= secs <= run.seconds + 1e-6,
        f"stats['seconds'] is {secs!r}, not the call's duration (<= {run.seconds:.3f} s)",
    )


def _check_input_untouched(ctx: CheckContext) -> None:
    run = ctx.run()
    after = _state(run.model)
    _expect(run.before.keys() == after.keys(), "the input model's state_dict keys changed")
    bad = _differing(run.before, after)
    _expect(not bad, f"the input model was modified (parameters/buffers {bad[:5]})")
    grads = [p.requires_grad for p in run.model.parameters()]
    _expect(grads == run.grads_before, "the input model's requires_grad flags changed")
    new = run.result.model
    _expect(new is not run.model, "the result is the input model itself, not a new one")
    old_ptrs = {p.data_ptr() for p in run.model.parameters()}
    shared = [n for n, p in new.named_parameters() if p.data_ptr() in old_ptrs]
    _expect(not shared, f"the result shares parameter storage with the input ({shared[:5]})")


def _check_architecture_kept(ctx: CheckContext) -> None:
    run = ctx.run()
    new = run.result.model
    _expect(
        type(new) is type(run.model),
        f"the result is a {type(new).__name__}, the input a {type(run.model).__name__}",
    )
    shapes = {k: tuple(v.shape) for k, v in new.state_dict().items()}
    want = {k: tuple(v.shape) for k, v in run.before.items()}
    _expect(shapes == want, "the result's state_dict keys or shapes differ from the input's")
    _expect(not new.training, "the result is in training mode (unlearn must return eval mode)")
    method = run.result.stats.get("method")
    _expect(method == ctx.cls.name, f"stats['method'] is {method!r}, not {ctx.cls.name!r}")


def _check_tags_honoured(ctx: CheckContext) -> None:
    tags = set(ctx.cls.tags)
    _expect(tags <= TAGS, f"unknown tags {sorted(tags - TAGS)}; known: {sorted(TAGS)}")
    reads = ctx.run().task.reads
    if "needs_retain" not in tags:
        _expect(reads["retain"] == 0, "not tagged needs_retain, but it read the retain set")
    if "needs_reserve" not in tags:
        _expect(reads["reserve"] == 0, "not tagged needs_reserve, but it read the reserve")


def _check_forgets(ctx: CheckContext) -> None:
    run = ctx.run()
    f = run.task.forget
    before, after = run.loss_before, ctx.loss_fn(run.result.model, f)
    _expect(after > before, f"the forget loss did not rise: {before:.4f} -> {after:.4f}")
    if not ctx.custom_loss and not f.is_text:  # a weak method (finetune) may keep the argmax
        a0 = accuracy(run.model, f.x, f.y, device=_device_of(run.model))
        a1 = accuracy(run.result.model, f.x, f.y, device=_device_of(run.result.model))
        _expect(a1 <= a0, f"the forget accuracy rose: {a0:.2f}% -> {a1:.2f}%")


def _check_deterministic(ctx: CheckContext) -> None:
    states = []
    for _ in range(2):  # fresh input copies: a method that mutates its input fails elsewhere
        res = ctx.unlearn(ctx.make(), ctx.model(), ctx.task(seed=5))
        states.append(_state(res.model))
    bad = _differing(*states)
    _expect(not bad, f"two runs with seed 5 gave different weights ({bad[:5]})")


def _check_refuses_bad_tasks(ctx: CheckContext) -> None:
    tags, forget = ctx.cls.tags, ctx.case.task.forget
    if "needs_retain" in tags:
        _expect_raises(
            RequestError,
            "retain",
            lambda: ctx.unlearn(ctx.make(), ctx.model(), ctx.task(retain=False)),
            "a task without retain data",
        )
    if "needs_reserve" in tags:
        _expect_raises(
            RequestError,
            "reserve",
            lambda: ctx.unlearn(ctx.make(), ctx.model(), ctx.task(reserve=False)),
            "a task without a reserve",
        )
    # a bad request never reaches a method: the task refuses it with a clear error
    _expect_raises(
        RequestError,
        "empty",
        lambda: UnlearnTask(TensorSet.empty_like(forget)),
        "an empty forget set",
    )
    dup = TensorSet(forget.x[[0, 0]], forget.y[[0, 0]], forget.ids[[0, 0]])
    _expect_raises(RequestError, "duplicate", lambda: UnlearnTask(dup), "duplicate forget ids")
    head = TensorSet(forget.x[:3], forget.y[:3], forget.ids[:3])
    _expect_raises(
        RequestError, "overlap", lambda: UnlearnTask(forget, _retain=head), "forget ∩ retain"
    )


def _has_stopping_rule(cls: type[Unlearner]) -> bool:
    names = (
        {f.name for f in dataclasses.fields(cls.Config)}
        if dataclasses.is_dataclass(cls.Config)
        else set()
    )
    return {"stop_forget_acc", "eval_every"} <= names


def _check_stopping_rule(ctx: CheckContext) -> None:
    u = ctx.make(stop_forget_acc=100.0, eval_every=2)
    stats = ctx.unlearn(u, ctx.model(), ctx.task()).stats
    _expect(
        stats.get("steps") == 2,
        f"stop_forget_acc=100, eval_every=2 ran {stats.get('steps')} "
        "steps, not 2 (the rule holds at the first check)",
    )
    _expect(stats.get("stopped_early") is True, f"stats['stopped_early'] is not True: {stats}")
    acc = stats.get("forget_acc_at_stop")
    _expect(isinstance(acc, float) and 0 <= acc <= 100, f"forget_acc_at_stop is {acc!r}")
    _expect_raises(ConfigError, "eval_every", lambda: ctx.make(eval_every=0), "eval_every=0")


@dataclass(frozen=True)
class Check:
    """A named conformance check: ``run(ctx)`` raises on failure; ``applies(cls)`` says whether
    it concerns an unlearner class at all."""

    name: str
    doc: str
    run: Callable[[CheckContext], None]
    applies: Callable[[type[Unlearner]], bool] = lambda cls: True

    def bind(self, ctx: CheckContext) -> Callable[[], None]:
        """A zero-argument callable running this check on ``ctx``; it raises
        :class:`ConformanceError` naming the check (and chaining the cause) when it fails."""

        def run() -> None:
            try:
                self.run(ctx)
            except _Fail as e:
                raise ConformanceError(ctx.name, {self.name: str(e)}) from e
            except Exception as e:
                why = f"raised {type(e).__name__}: {e}"
                raise ConformanceError(ctx.name, {self.name: why}) from e

        run.__name__ = f"check_{self.name}"
        run.__doc__ = self.doc
        return run


#: Every check, in the order :func:`check_unlearner` runs them.
CHECKS: tuple[Check, ...] = (
    Check("config", "documented dataclass config; clone round-trips; unknown options refused; "
          "paper and docstring", _check_config),
    Check("finishes", "one unlearn call returns within timeout_s (a hang guard) and reports "
          "its seconds", _check_finishes),
    Check("input_untouched", "the input model's parameters, buffers and requires_grad flags are "
          "bit-equal after the call; the result is a new model sharing no storage",
          _check_input_untouched),
    Check("architecture_kept", "the result has the input's class, state_dict keys and shapes, "
          "is in eval mode, and stats name the method", _check_architecture_kept),
    Check("tags_honoured", "known tags; retain / reserve data read only when tagged "
          "needs_retain / needs_reserve", _check_tags_honoured),
    Check("forgets", "the forget loss rises above the input model's (and the forget accuracy "
          "does not)", _check_forgets),
    Check("deterministic", "two runs with the same seed give bit-identical weights",
          _check_deterministic),
    Check("refuses_bad_tasks", "missing retain / reserve data (when tagged), empty, duplicate "
          "and overlapping forget sets are refused with a RequestError naming the problem",
          _check_refuses_bad_tasks),
    Check("stopping_rule", "stop_forget_acc=100, eval_every=2 stops after 2 steps and says so; "
          "eval_every=0 is refused (configs with the matched-forgetting rule only)",
          _check_stopping_rule, _has_stopping_rule),
)  # fmt: skip

CHECK_NAMES: tuple[str, ...] = tuple(c.name for c in CHECKS)
