"""The one training loop: original models, gold retrains, shard models and fine-tuning all use it.

:func:`fit` trains any ``nn.Module`` that maps a batch of float pixels in [0, 1] to logits on
in-memory tensors (no DataLoader: at these sizes indexing a tensor is faster and deterministic).
:func:`train_model` builds a registered model under a seed and fits it on a split's training ids;
:func:`retrain` reproduces that recipe on train \\ request — the *gold model* of DESIGN.md.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from obliviate.checkpoint import dataset_for, load_checkpoint, save_checkpoint
from obliviate.config import EPOCHS_MAX, LR_MAX, SEED_MAX, STEPS_MAX, opt, validate_config
from obliviate.data.dataset import ImageDataset
from obliviate.data.request import ForgetRequest
from obliviate.data.split import Split
from obliviate.errors import ConfigError
from obliviate.inference import batched_logits
from obliviate.models import create_model
from obliviate.utils import ProgressBar, resolve_device

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`fit`. Defaults suit small CNNs on MNIST-sized data."""

    epochs: int = opt(5, "Number of passes over the training set.", ge=0, le=EPOCHS_MAX)
    batch_size: int = opt(
        128, "Mini-batch size (128 is fastest for small models on 2 CPU cores).", ge=1
    )
    optimizer: Literal["sgd", "adam", "adamw"] = opt("sgd", "Optimiser.")
    lr: float = opt(0.05, "Peak learning rate.", gt=0, le=LR_MAX)
    momentum: float = opt(0.9, "SGD momentum (ignored by Adam).", ge=0, lt=1)
    weight_decay: float = opt(5e-4, "L2 weight decay (decoupled for adamw).", ge=0)
    nesterov: bool = opt(False, "Nesterov momentum for SGD.")
    schedule: Literal["constant", "cosine", "step", "onecycle"] = opt(
        "cosine", "LR schedule, stepped per batch. step: ×gamma every step_epochs epochs."
    )
    step_epochs: int = opt(30, "Epochs between LR drops for schedule=step.", ge=1)
    gamma: float = opt(0.1, "LR multiplier at each drop for schedule=step.", gt=0)
    warmup_epochs: float = opt(
        0.0, "Linear warm-up length in epochs (fractions allowed).", ge=0, le=EPOCHS_MAX
    )
    augment: Literal["none", "crop", "crop_flip"] = opt(
        "none",
        "Label-preserving augmentation: random crop after zero padding, and horizontal flip "
        "(do not flip digits or text).",
    )
    crop_padding: int = opt(4, "Zero padding before the random crop, in pixels.", ge=0)
    label_smoothing: float = opt(0.0, "Cross-entropy label smoothing.", ge=0, le=1)
    grad_clip: float = opt(0.0, "Clip the global gradient norm to this value (0 disables).", ge=0)
    early_stop_patience: int = opt(
        0,
        "Stop after this many evaluations without validation improvement and restore the best "
        "weights (0 disables; needs validation data).",
        ge=0,
    )
    eval_every: int = opt(
        1, "Evaluate on validation data every this many epochs (0 disables).", ge=0
    )
    max_steps: int = opt(0, "Stop after this many optimiser steps (0: no cap).", ge=0, le=STEPS_MAX)
    bf16: bool = opt(False, "bfloat16 autocast (fast on CPUs with avx512_bf16, and on GPUs).")
    seed: int = opt(
        0, "Seed of the initialisation, data order, augmentation and dropout.", ge=0, le=SEED_MAX
    )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __post_init__(self) -> None:
        validate_config(self)


@dataclass
class EpochLog:
    epoch: int
    loss: float
    lr: float
    seconds: float
    steps: int
    val_acc: float | None = None


@dataclass
class History:
    epochs: list[EpochLog]
    steps: int
    seconds: float
    stopped_early: bool = False
    best_epoch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class OptimizerFields(Protocol):
    """What :func:`make_optimizer` reads from a config (``TrainConfig``, an unlearner's config).
    A ``nesterov`` field, when present, switches on Nesterov momentum for SGD."""

    @property
    def optimizer(self) -> str: ...
    @property
    def lr(self) -> float: ...
    @property
    def momentum(self) -> float: ...
    @property
    def weight_decay(self) -> float: ...


OPTIMIZERS = ("sgd", "adam", "adamw")


def make_optimizer(params: Any, cfg: OptimizerFields) -> torch.optim.Optimizer:
    """The optimiser ``cfg.optimizer`` names over ``params``: SGD (momentum, L2 weight decay,
    Nesterov if ``cfg.nesterov``), Adam (L2 weight decay) or AdamW (decoupled weight decay), at
    ``cfg.lr``. The one optimiser factory of training and unlearning alike; an unknown name is a
    :class:`ConfigError`."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            nesterov=bool(getattr(cfg, "nesterov", False)),
        )
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {cfg.optimizer!r}")


def cosine_decay(t: float) -> float:
    """Half-cosine LR multiplier ``0.5 (1 + cos(π min(1, t)))``: 1 at ``t = 0``, 0 from ``t = 1``
    (Loshchilov & Hutter 2017, SGDR, without restarts). The one cosine of every schedule."""
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


def lr_lambda(schedule: str, total_steps: int) -> Callable[[int], float]:
    """Per-step LR multiplier for ``LambdaLR`` of the unlearners' schedules: ``"constant"`` is 1;
    ``"cosine"`` is :func:`cosine_decay` of ``step / total_steps`` (1 throughout when
    ``total_steps <= 1``). An unknown schedule is a :class:`ConfigError`."""
    if schedule not in ("constant", "cosine"):
        raise ConfigError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
    if schedule == "constant" or total_steps <= 1:
        return lambda step: 1.0
    return lambda step: cosine_decay(step / total_steps)


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int, total_steps: int) -> float:
    """LR multiplier at optimiser step ``step`` (0-based) — pure, so it is easy to test."""
    warm = cfg.warmup_epochs * steps_per_epoch
    if warm > 0 and step < warm:
        return (step + 1) / warm
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "step":
        return cfg.gamma ** (step // max(1, cfg.step_epochs * steps_per_epoch))
    span = max(1.0, total_steps - warm)
    t = min(1.0, (step - warm) / span)
    if cfg.schedule == "cosine":
        return cosine_decay(t)
    # onecycle: rise for the first 30 % then cosine down (warm-up, if any, replaces the rise)
    if warm <= 0 and t < 0.3:
        return 0.1 + 0.9 * t / 0.3
    return cosine_decay(t if warm > 0 else (t - 0.3) / 0.7)


def augment_batch(x: torch.Tensor, cfg: TrainConfig, g: torch.Generator) -> torch.Tensor:
    """Per-sample random crop (after ``crop_padding`` zero padding) and optional h-flip."""
    if cfg.augment == "none":
        return x
    b, _, h, w = x.shape
    p = cfg.crop_padding
    if p > 0:
        padded = F.pad(x, (p, p, p, p))
        oy = torch.randint(0, 2 * p + 1, (b,), generator=g)
        ox = torch.randint(0, 2 * p + 1, (b,), generator=g)
        rows = (oy[:, None] + torch.arange(h))[:, :, None]
        cols = (ox[:, None] + torch.arange(w))[:, None, :]
        bidx = torch.arange(b)[:, None, None]
        x = padded[bidx, :, rows, cols].permute(0, 3, 1, 2).contiguous()
    if cfg.augment == "crop_flip":
        flip = torch.rand(b, generator=g) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


def cross_entropy_loss(label_smoothing: float = 0.0) -> LossFn:
    def loss(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(xb), yb, label_smoothing=label_smoothing)

    return loss


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    *,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
    device: str | torch.device | None = "cpu",
    loss_fn: LossFn | None = None,
    show_progress: bool = True,
    desc: str = "train",
) -> History:
    """Train ``model`` in place on (x, y) with ``cfg``; return the per-epoch history.

    Deterministic: the data order and augmentation come from a generator seeded with ``cfg.seed``
    and global torch RNG (dropout) is seeded too, so same inputs + same seed → identical weights on
    the same machine. ``loss_fn(model, xb, yb)`` replaces cross-entropy (fine-tuning variants use
    it). The model ends in eval mode.
    """
    validate_config(cfg)  # a field set after construction is checked before any work
    dev = resolve_device(device)
    model.to(dev)
    if len(x) != len(y):
        raise ConfigError(f"x and y have different lengths: {len(x)} vs {len(y)}")
    if len(x) == 0:
        raise ConfigError("cannot train on an empty set")
    if cfg.early_stop_patience > 0 and val is None:
        raise ConfigError("early_stop_patience > 0 needs validation data (a split with val > 0)")
    loss_fn = loss_fn or cross_entropy_loss(cfg.label_smoothing)
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    opt_ = make_optimizer([p for p in model.parameters() if p.requires_grad], cfg)
    n, bs = len(x), cfg.batch_size
    spe = math.ceil(n / bs)
    total = spe * cfg.epochs if cfg.max_steps <= 0 else min(spe * cfg.epochs, cfg.max_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt_, lambda s: lr_factor(cfg, s, spe, total))
    autocast = torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=cfg.bf16)
    logs: list[EpochLog] = []
    steps, best, best_state, best_epoch, bad = 0, -1.0, None, None, 0
    stopped = False
    t_start = time.perf_counter()
    with ProgressBar(total, desc, show_progress) as bar:
        for epoch in range(cfg.epochs):
            t0 = time.perf_counter()
            model.train()
            perm = torch.randperm(n, generator=g)
            loss_sum = torch.zeros((), device=dev)
            ep_steps = 0
            for i in range(0, n, bs):
                if cfg.max_steps > 0 and steps >= cfg.max_steps:
                    break
                idx = perm[i : i + bs]
                xb = augment_batch(x[idx], cfg, g).to(dev, non_blocking=True)
                yb = y[idx].to(dev, non_blocking=True)
                with autocast:
                    loss = loss_fn(model, xb, yb)
                opt_.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt_.step()
                sched.step()
                loss_sum += loss.detach().float()
                steps += 1
                ep_steps += 1
                bar.advance()
            log = EpochLog(
                epoch=epoch + 1,
                loss=float(loss_sum) / max(1, ep_steps),
                lr=float(opt_.param_groups[0]["lr"]),
                seconds=time.perf_counter() - t0,
                steps=ep_steps,
            )
            if not math.isfinite(log.loss):
                raise FloatingPointError(
                    f"training diverged at epoch {epoch + 1}: loss is {log.loss}"
                )
            if val is not None and cfg.eval_every > 0 and (epoch + 1) % cfg.eval_every == 0:
                pred = batched_logits(model, val[0], device=dev).argmax(1)
                log.val_acc = 100.0 * float((pred == val[1]).float().mean())
                if log.val_acc > best:
                    best, best_epoch, bad = log.val_acc, epoch + 1, 0
                    if cfg.early_stop_patience > 0:
                        best_state = copy.deepcopy(model.state_dict())
                else:
                    bad += 1
            logs.append(log)
            if cfg.max_steps > 0 and steps >= cfg.max_steps:
                break
            if cfg.early_stop_patience > 0 and bad >= cfg.early_stop_patience:
                stopped = True
                break
    if best_state is not None:  # early stopping on: keep the best validated weights
        model.load_state_dict(best_state)
    model.eval()
    return History(logs, steps, time.perf_counter() - t_start, stopped, best_epoch)


# ---------------------------------------------------------------------- high level


@dataclass
class TrainedModel:
    """A model with everything needed to save it as a checkpoint and to retrain it as gold."""

    model: nn.Module
    config: TrainConfig
    split: Split
    dataset: ImageDataset
    history: History
    trained_ids: torch.Tensor
    request: ForgetRequest | None = None
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)

    def save(self, path: str, **extra: Any) -> None:
        save_checkpoint(
            path,
            self.model,
            split=self.split,
            dataset=self.dataset,
            train_config=self.config.to_dict(),
            history=self.history.to_dict(),
            metrics=self.metrics,
            request=self.request,
            **extra,
        )


def training_ids(
    dataset: ImageDataset, split: Split, exclude: ForgetRequest | None = None
) -> torch.Tensor:
    """``split.train`` minus the (validated) ``exclude`` request, after checking the split."""
    split.check(dataset)
    if exclude is None:
        return split.train
    exclude.validate(split)
    return split.train[~torch.isin(split.train, exclude.tensor)]


def model_kwargs_for(
    dataset: ImageDataset, split: Split, model_kwargs: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Model kwargs with the dataset's shape and ``split.train``'s channel statistics filled in
    (explicit ``model_kwargs`` win). The statistics never depend on a request, so the gold model
    normalises exactly like the original."""
    kw = dict(model_kwargs or {})
    kw.setdefault("num_classes", dataset.num_classes)
    kw.setdefault("in_channels", dataset.in_channels)
    kw.setdefault("image_size", list(dataset.image_size))
    if "mean" not in kw or "std" not in kw:
        mean, std = dataset.channel_stats(split.train)
        kw.setdefault("mean", mean)
        kw.setdefault("std", std)
    return kw


def train_model(
    dataset: ImageDataset,
    split: Split,
    model: str | nn.Module,
    cfg: TrainConfig | None = None,
    *,
    model_kwargs: dict[str, Any] | None = None,
    exclude: ForgetRequest | None = None,
    device: str | torch.device | None = "cpu",
    show_progress: bool = True,
    evaluate_parts: Sequence[str] = ("train", "test", "val"),
) -> TrainedModel:
    """Build ``model`` (a registered name, created under ``cfg.seed``) and train it on the split.

    With ``exclude`` the request's ids are left out of training — this is how the gold model is
    made (:func:`retrain`). Passing an ``nn.Module`` trains that module (deep-copied first).
    """
    cfg = cfg or TrainConfig()
    train_ids = training_ids(dataset, split, exclude)
    if isinstance(model, str):
        kw = model_kwargs_for(dataset, split, model_kwargs)
        torch.manual_seed(cfg.seed)
        net = create_model(model, **kw)
    else:
        net = copy.deepcopy(model)
    x, y = dataset.tensors(train_ids)
    val = dataset.tensors(split.val) if len(split.val) else None
    hist = fit(
        net,
        x,
        y,
        cfg,
        val=val,
        device=device,
        show_progress=show_progress,
        desc="gold retrain" if exclude is not None else "train",
    )
    tm = TrainedModel(net, cfg, split, dataset, hist, train_ids, exclude)
    tm.metrics = evaluate(net, dataset, split, parts=evaluate_parts, request=exclude, device=device)
    return tm


def evaluate(
    model: nn.Module,
    dataset: ImageDataset,
    split: Split,
    parts: Sequence[str] = ("train", "test", "val"),
    *,
    request: ForgetRequest | None = None,
    per_class: bool = True,
    device: str | torch.device | None = "cpu",
) -> dict[str, Any]:
    """Accuracy (percent) on each non-empty split part, the forget set if a request is given, and
    per-class test accuracy. Keys: ``acc/<part>``, ``acc/forget``, ``per_class/test``."""
    dev = resolve_device(device)
    out: dict[str, Any] = {}
    groups: dict[str, torch.Tensor] = {p: getattr(split, p) for p in parts}
    if request is not None:
        groups["retain"] = split.train[~torch.isin(split.train, request.tensor)]
        groups["forget"] = request.tensor
    for name, ids in groups.items():
        if len(ids) == 0:
            continue
        xs, ys = dataset.tensors(ids)
        pred = batched_logits(model, xs, device=dev).argmax(1)
        out[f"acc/{name}"] = 100.0 * float((pred == ys).float().mean())
        if per_class and name == "test":
            pc = {}
            for c in range(dataset.num_classes):
                m = ys == c
                if m.any():
                    pc[dataset.class_names[c]] = 100.0 * float((pred[m] == c).float().mean())
            out["per_class/test"] = pc
    return out


def retrain(
    checkpoint: str,
    request: ForgetRequest,
    *,
    dataset: ImageDataset | None = None,
    device: str | torch.device | None = "cpu",
    show_progress: bool = True,
) -> TrainedModel:
    """The gold model: the checkpoint's exact recipe (model, config, seeds) on train \\ request.

    The dataset is reloaded from the checkpoint's recorded source unless given; its content must
    match the fingerprint the checkpoint was trained on.
    """
    ck = load_checkpoint(checkpoint, device="cpu")
    ds = dataset if dataset is not None else dataset_for(ck)
    ck.split.check(ds)
    request.validate(ck.split)
    spec = ck.meta["model"]
    if spec is None:
        raise ConfigError(
            f"checkpoint {checkpoint} holds an unregistered model; retrain needs a registered one"
        )
    cfg = TrainConfig(**ck.meta["train_config"])
    return train_model(
        ds,
        ck.split,
        spec["name"],
        cfg,
        model_kwargs=spec["kwargs"],
        exclude=request,
        device=device,
        show_progress=show_progress,
    )
