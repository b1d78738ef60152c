"""Training loop: schedules, augmentation, determinism, errors, gold retrain, MNIST."""

from __future__ import annotations

import math

import pytest
import torch

from obliviate.data import ForgetRequest, ImageDataset, make_split
from obliviate.errors import ConfigError, RequestError
from obliviate.train import (
    TrainConfig,
    augment_batch,
    cosine_decay,
    evaluate,
    fit,
    lr_factor,
    lr_lambda,
    make_optimizer,
    retrain,
    train_model,
)
from obliviate.unlearn.base import GradientConfig
from obliviate.unlearn.base import make_optimizer as unlearn_make_optimizer


def blobs(n: int = 600, k: int = 4, seed: int = 0, size: int = 12) -> ImageDataset:
    """Separable synthetic images: each class lights up its own quadrant-ish block."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    x = torch.rand(n, 1, size, size, generator=g) * 0.3
    for c in range(k):
        r, col = divmod(c, 2)
        h = size // 2
        x[y == c, :, r * h : (r + 1) * h, col * h : (col + 1) * h] += 0.6
    return ImageDataset.from_float(
        x.clamp(0, 1), y, [f"c{i}" for i in range(k)], ids=torch.arange(n) * 7 + 3, name="blobs"
    )


@pytest.fixture(scope="module")
def ds() -> ImageDataset:
    return blobs()


@pytest.fixture(scope="module")
def split(ds):
    return make_split(ds, seed=0, test=0.2, val=40, reserve=30)


FAST = TrainConfig(epochs=2, batch_size=32, lr=0.05, seed=3)


def test_lr_schedules():
    c = TrainConfig(schedule="cosine")
    assert lr_factor(c, 0, 10, 100) == pytest.approx(1.0)
    assert lr_factor(c, 50, 10, 100) == pytest.approx(0.5)
    assert lr_factor(c, 100, 10, 100) == pytest.approx(0.0, abs=1e-12)
    w = TrainConfig(schedule="constant", warmup_epochs=1)
    assert [lr_factor(w, s, 4, 40) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    st = TrainConfig(schedule="step", step_epochs=2, gamma=0.1)
    assert lr_factor(st, 7, 4, 100) == pytest.approx(1.0)
    assert lr_factor(st, 8, 4, 100) == pytest.approx(0.1)
    one = TrainConfig(schedule="onecycle")
    vals = [lr_factor(one, s, 10, 100) for s in range(100)]
    assert max(vals) == pytest.approx(1.0, abs=0.02) and vals[0] < 0.2 and vals[-1] < 0.01


def test_augment_crop_and_flip_are_label_preserving_shifts():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, 6, 6)
    assert torch.equal(augment_batch(x, TrainConfig(augment="none"), g), x)
    y = augment_batch(x, TrainConfig(augment="crop", crop_padding=0), g)
    assert torch.equal(y, x)
    y = augment_batch(x, TrainConfig(augment="crop", crop_padding=2), g)
    assert y.shape == x.shape
    # every output is a shifted copy: its non-zero pixels are a sub-block of the input
    for i in range(8):
        found = False
        pad = torch.nn.functional.pad(x[i], (2, 2, 2, 2))
        for dy in range(5):
            for dx in range(5):
                if torch.equal(pad[:, dy : dy + 6, dx : dx + 6], y[i]):
                    found = True
        assert found
    f = augment_batch(x, TrainConfig(augment="crop_flip", crop_padding=0), g)
    assert all(torch.equal(f[i], x[i]) or torch.equal(f[i], x[i].flip(2)) for i in range(8))


def test_fit_learns_and_is_deterministic(ds, split):
    a = train_model(ds, split, "small_cnn", FAST, show_progress=False)
    b = train_model(ds, split, "small_cnn", FAST, show_progress=False)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa), "same seed must give bit-identical weights"
    c = train_model(
        ds, split, "small_cnn", TrainConfig(epochs=2, batch_size=32, seed=4), show_progress=False
    )
    assert any(not torch.equal(sa[k], c.model.state_dict()[k]) for k in sa)
    assert a.metrics["acc/test"] > 90.0
    assert len(a.history.epochs) == 2 and a.history.steps == 2 * math.ceil(len(split.train) / 32)
    assert not a.model.training


def test_fit_rejects_bad_input(ds, split):
    from obliviate.models import create_model

    m = create_model("small_cnn", num_classes=4, in_channels=1, image_size=[12, 12])
    with pytest.raises(ConfigError, match="empty"):
        fit(
            m,
            torch.zeros(0, 1, 12, 12),
            torch.zeros(0, dtype=torch.long),
            FAST,
            show_progress=False,
        )
    with pytest.raises(ConfigError, match="different lengths"):
        fit(
            m,
            torch.zeros(3, 1, 12, 12),
            torch.zeros(2, dtype=torch.long),
            FAST,
            show_progress=False,
        )
    with pytest.raises(ConfigError, match="validation"):
        fit(
            m,
            torch.zeros(3, 1, 12, 12),
            torch.zeros(3, dtype=torch.long),
            TrainConfig(early_stop_patience=2),
            show_progress=False,
        )
    with pytest.raises(ConfigError, match="lr"):
        TrainConfig(lr=0)


def test_early_stopping_restores_best(ds, split):
    cfg = TrainConfig(epochs=30, batch_size=32, lr=0.05, seed=0, early_stop_patience=1)
    tm = train_model(ds, split, "small_cnn", cfg, show_progress=False)
    h = tm.history
    assert h.stopped_early and len(h.epochs) < 30
    best = max(e.val_acc for e in h.epochs)
    assert evaluate(tm.model, ds, split, parts=("val",))["acc/val"] == pytest.approx(best)


def test_max_steps_caps_training(ds, split):
    tm = train_model(
        ds,
        split,
        "small_cnn",
        TrainConfig(epochs=5, max_steps=3, batch_size=32),
        show_progress=False,
    )
    assert tm.history.steps == 3


def test_gold_retrain_reproduces_recipe_without_request(ds, split, tmp_path):
    original = train_model(ds, split, "small_cnn", FAST, show_progress=False)
    original.save(str(tmp_path / "orig"))
    req = ForgetRequest(split.train[:25])
    gold = retrain(str(tmp_path / "orig"), req, dataset=ds, show_progress=False)
    assert not torch.isin(gold.trained_ids, req.tensor).any()
    assert len(gold.trained_ids) == len(split.train) - 25
    direct = train_model(ds, split, "small_cnn", FAST, exclude=req, show_progress=False)
    sg, sd = gold.model.state_dict(), direct.model.state_dict()
    assert all(torch.equal(sg[k], sd[k]) for k in sg), (
        "gold = same recipe and seeds on train \\ request"
    )
    assert "acc/forget" in gold.metrics and "acc/retain" in gold.metrics
    with pytest.raises(RequestError, match=str(int(split.reserve[0]))):
        retrain(str(tmp_path / "orig"), ForgetRequest([int(split.reserve[0])]), dataset=ds)


@pytest.mark.integration
def test_small_cnn_reaches_95_percent_on_real_mnist_10k():
    from obliviate.data import load_dataset

    mnist = load_dataset("mnist")
    sp = make_split(mnist, seed=0, train=10000)
    tm = train_model(
        mnist,
        sp,
        "small_cnn",
        TrainConfig(epochs=3, lr=0.05, seed=0),
        show_progress=False,
        evaluate_parts=("test",),
    )
    assert tm.metrics["acc/test"] >= 95.0, tm.metrics


def test_one_optimiser_factory_and_one_cosine() -> None:
    assert unlearn_make_optimizer is make_optimizer  # the old name stays importable
    p = [torch.nn.Parameter(torch.zeros(2))]
    sgd = make_optimizer(p, TrainConfig(nesterov=True))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"]
    g = make_optimizer(p, GradientConfig(optimizer="sgd"))  # no nesterov field: plain momentum
    assert isinstance(g, torch.optim.SGD) and not g.defaults["nesterov"]
    assert type(make_optimizer(p, GradientConfig(optimizer="adam"))) is torch.optim.Adam
    assert type(make_optimizer(p, TrainConfig(optimizer="adamw"))) is torch.optim.AdamW
    with pytest.raises(ConfigError, match="optimizer must be one of"):
        make_optimizer(p, TrainConfig(optimizer="lbfgs"))  # type: ignore[arg-type]
    assert [cosine_decay(t) for t in (0.0, 0.5, 1.0, 2.0)] == pytest.approx([1, 0.5, 0, 0])
    assert [lr_lambda("cosine", 4)(s) for s in range(5)] == pytest.approx(
        [cosine_decay(s / 4) for s in range(5)]
    )
    assert lr_lambda("cosine", 1)(0) == lr_lambda("constant", 9)(5) == 1.0
    with pytest.raises(ConfigError, match="schedule"):
        lr_lambda("step", 4)
