"""Input perturbations: units, τ-ball and [0, 1] guarantees, attack direction, determinism, and
that attacks leave the model untouched."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from obliviate.attacks import PERTURBATIONS, fgsm, gaussian, perturb, pgd, uniform
from obliviate.errors import ConfigError, UnknownNameError


def tiny_linear(seed: int = 0, d_in: int = 8, k: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d_in, k))


def tiny_conv(seed: int = 0) -> nn.Module:
    """Conv + in-place ReLU + BatchNorm + Dropout: exercises eval mode and in-place ops."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 3),
    )


def data(n: int = 16, seed: int = 0, lo: float = 0.0, hi: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    x = lo + (hi - lo) * torch.rand(n, 1, 4, 4, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return x, y


def ce(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return F.cross_entropy(model(x), y, reduction="none")


ATTACKS = ["fgsm", "pgd"]


def test_registry_lists_all_kinds():
    assert PERTURBATIONS.names() == ["fgsm", "gaussian", "pgd", "uniform"]
    assert PERTURBATIONS.meta("gaussian")["ball"] is None
    assert all(PERTURBATIONS.meta(k)["ball"] == "linf" for k in ("uniform", "fgsm", "pgd"))
    assert (
        PERTURBATIONS.meta("pgd")["needs_model"]
        and not PERTURBATIONS.meta("uniform")["needs_model"]
    )


@pytest.mark.parametrize("fn", [gaussian, uniform])
def test_noise_is_seeded_and_in_range(fn):
    x, _ = data()
    a = fn(x, 0.2, torch.Generator().manual_seed(3))
    b = fn(x, 0.2, torch.Generator().manual_seed(3))
    c = fn(x, 0.2, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(fn(x, 0.0, torch.Generator().manual_seed(3)), x)


def test_uniform_stays_in_ball_and_gaussian_has_std_tau():
    x = torch.full((2000, 1, 4, 4), 0.5)
    u = uniform(x, 0.1, torch.Generator().manual_seed(0))
    assert (u - x).abs().max() <= 0.1 + 1e-6
    g = gaussian(x, 0.01, torch.Generator().manual_seed(0))
    assert abs(float((g - x).std()) - 0.01) < 5e-4
    assert (g - x).abs().max() > 0.01  # not confined to a τ-ball (documented)


@pytest.mark.parametrize("kind", ATTACKS)
@pytest.mark.parametrize("direction", ["decrease", "increase"])
@pytest.mark.parametrize("tau", [0.0, 0.01, 0.1, 0.5])
def test_attacks_stay_in_ball_and_range(kind, direction, tau):
    model = tiny_conv()
    x, y = data(32)
    kw = {"random_start": True} if kind == "fgsm" else {"steps": 5, "alpha": 0.7 * tau}
    xa = perturb(
        kind, model, x, y, tau, torch.Generator().manual_seed(0), direction=direction, **kw
    )
    assert xa.shape == x.shape
    assert (xa - x).abs().max() <= tau + 1e-6
    assert xa.min() >= 0 and xa.max() <= 1


@pytest.mark.parametrize("kind", ATTACKS)
def test_attack_direction_moves_loss(kind):
    model = tiny_linear(1, d_in=16)
    x, y = data(64, lo=0.2, hi=0.8)  # no clamping within τ = 0.05
    before = ce(model, x, y)
    fn = fgsm if kind == "fgsm" else pgd
    kw = {} if kind == "fgsm" else {"steps": 1, "alpha": 0.05}
    down = fn(model, x, y, 0.05, direction="decrease", random_start=False, **kw)
    up = fn(model, x, y, 0.05, direction="increase", random_start=False, **kw)
    assert (ce(model, down, y) < before).all()
    assert (ce(model, up, y) > before).all()


def test_pgd_default_decreases_mean_loss_on_conv_model():
    model = tiny_conv(2)
    x, y = data(64, seed=5)
    g = torch.Generator().manual_seed(0)
    xa = pgd(model, x, y, 0.1, generator=g)
    assert ce(model, xa, y).mean() < ce(model, x, y).mean()
    xi = pgd(model, x, y, 0.1, generator=torch.Generator().manual_seed(0), direction="increase")
    assert ce(model, xi, y).mean() > ce(model, x, y).mean()


@pytest.mark.parametrize("kind", ATTACKS)
def test_attacks_leave_model_untouched(kind):
    model = tiny_conv(3)
    model.train()
    ref = copy.deepcopy(model.state_dict())
    x, y = data(16)
    perturb(kind, model, x, y, 0.1, torch.Generator().manual_seed(0))
    assert model.training  # mode restored
    for k, v in model.state_dict().items():  # params and BN running stats unchanged
        assert torch.equal(v, ref[k]), k
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("kind", ATTACKS)
def test_attacks_deterministic_under_seed(kind):
    model = tiny_conv(4)
    x, y = data(16)
    kw = {"random_start": True}
    a = perturb(kind, model, x, y, 0.1, torch.Generator().manual_seed(7), **kw)
    b = perturb(kind, model, x, y, 0.1, torch.Generator().manual_seed(7), **kw)
    c = perturb(kind, model, x, y, 0.1, torch.Generator().manual_seed(8), **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_attack_works_when_called_under_inference_mode():
    model = tiny_conv(5)
    with torch.inference_mode():
        x, y = data(8)
        xa = pgd(model, x, y, 0.05, steps=3, generator=torch.Generator().manual_seed(0))
    assert (xa - x).abs().max() <= 0.05 + 1e-6
    assert all(p.grad is None for p in model.parameters())


def test_dispatcher_matches_direct_calls_and_validates():
    model = tiny_linear(d_in=16)
    x, y = data(8)
    assert torch.equal(
        perturb("gaussian", None, x, None, 0.1, torch.Generator().manual_seed(1)),
        gaussian(x, 0.1, torch.Generator().manual_seed(1)),
    )
    assert torch.equal(
        perturb("pgd", model, x, y, 0.1, torch.Generator().manual_seed(1), steps=2),
        pgd(model, x, y, 0.1, steps=2, generator=torch.Generator().manual_seed(1)),
    )
    with pytest.raises(UnknownNameError, match="pgd"):
        perturb("pdg", model, x, y, 0.1)
    with pytest.raises(ConfigError, match="needs a model"):
        perturb("pgd", None, x, y, 0.1)
    with pytest.raises(ConfigError, match="no options"):
        perturb("uniform", None, x, None, 0.1, steps=3)
    with pytest.raises(ConfigError, match="tau"):
        gaussian(x, 1.5)
    with pytest.raises(ConfigError, match="direction"):
        fgsm(model, x, y, 0.1, direction="up")  # type: ignore[arg-type]
