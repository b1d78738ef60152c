"""Metrics against independent references (scikit-learn, scipy, closed forms) on tiny models."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy, norm
from sklearn.metrics import accuracy_score, recall_score, roc_auc_score
from sklearn.svm import SVC
from torch import nn

from obliviate.attacks import gaussian
from obliviate.metrics import (
    METRICS,
    MetricError,
    Timer,
    accuracy,
    avg_gap,
    gaps,
    js_divergence,
    knowledge_contamination,
    lira_offline,
    mia_efficacy,
    mia_features,
    per_class_accuracy,
    population_mia,
    relearn_time,
    residual_curve,
    residual_knowledge,
    speedup,
    train_shadow_models,
    unlearn_accuracy,
    weight_distance,
)

# --------------------------------------------------------------------------------- fixtures


def tiny(seed: int = 0, d_in: int = 8, k: int = 3, scale: float = 1.0) -> nn.Module:
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Flatten(), nn.Linear(d_in, k))
    with torch.no_grad():
        m[1].weight.mul_(scale)
    return m


def data(n: int, seed: int = 0, d: int = 8, k: int = 3):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 1, d, generator=g), torch.randint(0, k, (n,), generator=g)


def threshold_model(t: float, scale: float = 100.0) -> nn.Module:
    """1-pixel input → class 1 iff x > t (logits [0, scale·(x − t)])."""
    m = nn.Sequential(nn.Flatten(), nn.Linear(1, 2))
    with torch.no_grad():
        m[1].weight.copy_(torch.tensor([[0.0], [scale]]))
        m[1].bias.copy_(torch.tensor([0.0, -scale * t]))
    return m


def probs(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model.eval()(x).double(), 1).numpy()


# --------------------------------------------------------------------------------- registry


def test_every_metric_declares_direction_and_description():
    assert len(METRICS) >= 12
    for name in METRICS:
        meta = METRICS.meta(name)
        assert "higher_is_better" in meta and meta["higher_is_better"] in (True, False, None)
        assert meta["description"] and meta["reference"]


# --------------------------------------------------------------------------------- accuracy


def test_accuracy_per_class_and_ua_match_sklearn():
    m = tiny(1)
    x, y = data(200, 1)
    pred = probs(m, x).argmax(1)
    ref = 100 * accuracy_score(y.numpy(), pred)
    assert accuracy(m, x, y, batch_size=7) == pytest.approx(ref, abs=1e-12)
    assert unlearn_accuracy(m, x, y) == pytest.approx(100 - ref, abs=1e-12)
    per = per_class_accuracy(m, x, y)
    rec = recall_score(y.numpy(), pred, average=None, labels=[0, 1, 2])
    assert per == pytest.approx({c: 100 * r for c, r in enumerate(rec)})
    with pytest.raises(MetricError, match="empty"):
        accuracy(m, x[:0], y[:0])
    with pytest.raises(MetricError, match="one label per input"):
        accuracy(m, x, y[:-1])


# --------------------------------------------------------------------------------- MIA


@pytest.mark.parametrize("feature", ["prob", "entropy", "m_entropy", "loss"])
def test_mia_features_match_numpy(feature):
    m = tiny(2, scale=4.0)
    x, y = data(50, 2)
    p = probs(m, x)
    py = p[np.arange(50), y.numpy()]
    ref = {
        "prob": py,
        "loss": -np.log(py),
        "entropy": entropy(p, axis=1),
        "m_entropy": -(1 - py) * np.log(py)
        - np.array(
            [sum(p[i, j] * np.log(1 - p[i, j]) for j in range(3) if j != y[i]) for i in range(50)]
        ),
    }[feature]
    np.testing.assert_allclose(mia_features(m, x, y, feature), ref, rtol=1e-5, atol=1e-7)


def test_mia_efficacy_matches_direct_sklearn():
    m = tiny(3, scale=6.0)
    retain, test, forget = data(80, 10), data(50, 11), data(30, 12)
    seed, n_max = 5, 40
    # independent reproduction of the documented recipe
    rng = np.random.default_rng(seed)
    ir = np.sort(rng.choice(80, 40, replace=False))
    it = np.sort(rng.choice(50, 40, replace=False))

    def conf(xy, idx=None):
        x, y = xy
        p = probs(m, x)[np.arange(len(y)), y.numpy()]
        return p if idx is None else p[idx]

    feats = np.concatenate([conf(retain, ir), conf(test, it)]).reshape(-1, 1)
    labels = np.r_[np.ones(40), np.zeros(40)]
    clf = SVC(C=3, gamma="auto", kernel="rbf").fit(feats, labels)
    ref = 100 * np.mean(clf.predict(conf(forget).reshape(-1, 1)) == 0)
    got = mia_efficacy(m, retain, test, forget, n_max=n_max, seed=seed)
    assert got == pytest.approx(ref, abs=1e-12)
    assert 0 <= got <= 100
    assert got == mia_efficacy(m, retain, test, forget, n_max=n_max, seed=seed)
    with pytest.raises(MetricError, match="empty"):
        mia_efficacy(m, retain, test, (forget[0][:0], forget[1][:0]))


def _tpr_at_fpr_bruteforce(sm: np.ndarray, sn: np.ndarray, max_fpr: float) -> float:
    best = 0.0
    for t in np.r_[np.inf, sm, sn]:
        fpr, tpr = np.mean(sn >= t), np.mean(sm >= t)
        if fpr <= max_fpr:
            best = max(best, tpr)
    return best


def test_population_mia_matches_sklearn_and_bruteforce():
    m = tiny(4, scale=5.0)
    mem, non = data(150, 20), data(300, 21)
    res = population_mia(m, mem, non)

    def neg_loss(xy):
        x, y = xy
        with torch.no_grad():
            return -F.cross_entropy(m(x).double(), y, reduction="none").numpy()

    sm, sn = neg_loss(mem), neg_loss(non)
    auc = roc_auc_score(np.r_[np.ones(150), np.zeros(300)], np.r_[sm, sn])
    assert res.auc == pytest.approx(auc, abs=1e-12)
    assert res.tpr_at_1pct_fpr == pytest.approx(_tpr_at_fpr_bruteforce(sm, sn, 0.01))
    assert (res.n_members, res.n_nonmembers) == (150, 300)


def test_lira_offline_scores_and_auc():
    target = tiny(5, scale=3.0)
    shadows = [tiny(s, scale=3.0) for s in range(10, 14)]
    x, y = data(40, 30)
    membership = torch.arange(40) % 2 == 0
    res = lira_offline(target, shadows, x, y, membership=membership, fix_variance=False)

    def phi(model):
        p = probs(model, x)[np.arange(40), y.numpy()]
        return np.log(p / (1 - p))

    out = np.stack([phi(s) for s in shadows])
    z = (phi(target) - out.mean(0)) / out.std(0, ddof=1)
    np.testing.assert_allclose(res.score.numpy(), norm.cdf(z), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose((res.score + res.p_value).numpy(), 1.0, atol=1e-12)
    assert res.auc == pytest.approx(roc_auc_score(membership.numpy(), res.score.numpy()), abs=1e-12)
    assert res.auc_skipped is None
    pooled = lira_offline(target, shadows, x, y)
    assert pooled.auc is None and pooled.auc_skipped == "no membership labels given"
    assert torch.allclose(pooled.sigma_out, pooled.sigma_out[0].expand(40))
    with pytest.raises(MetricError, match=">= 2"):
        lira_offline(target, shadows[:1], x, y)


def test_train_shadow_models_excludes_targets_and_is_seeded():
    x, y = data(50, 40)
    seen: list[torch.Tensor] = []

    def train_fn(xs, ys, seed):
        seen.append(xs.clone())
        return tiny(seed)

    exclude = torch.arange(10)
    models = train_shadow_models(train_fn, x, y, k=3, fraction=0.5, seed=1, exclude=exclude)
    assert len(models) == 3 and all(len(s) == 20 for s in seen)
    for s in seen:  # no excluded row was trained on
        assert not any(torch.equal(r, e) for r in s for e in x[:10])
    first = [t.clone() for t in seen]
    seen.clear()
    train_shadow_models(train_fn, x, y, k=3, fraction=0.5, seed=1, exclude=exclude)
    assert all(torch.equal(a, b) for a, b in zip(first, seen, strict=True))


# --------------------------------------------------------------------------------- gap


def test_avg_gap_on_rurk_table1_numbers():
    gold = {"acc/retain": 100.00, "ua": 9.47, "acc/test": 93.30, "mia_efficacy": 22.50}
    neggrad = {"acc/retain": 99.28, "ua": 14.00, "acc/test": 92.02, "mia_efficacy": 18.18}
    assert gaps(neggrad, gold) == pytest.approx(
        {"acc/retain": 0.72, "ua": 4.53, "acc/test": 1.28, "mia_efficacy": 4.32}
    )
    assert avg_gap(neggrad, gold) == pytest.approx(2.7125)  # printed 2.71
    assert avg_gap(gold, gold) == 0.0
    gold5 = {"acc/retain": 99.96, "ua": 8.33, "acc/test": 94.80, "mia_efficacy": 27.00}
    orig5 = {"acc/retain": 99.93, "ua": 0.00, "acc/test": 95.37, "mia_efficacy": 4.67}
    assert avg_gap(orig5, gold5) == pytest.approx(7.815)  # printed 7.82
    with pytest.raises(MetricError, match="'ua' missing from metrics"):
        avg_gap({"acc/retain": 1.0}, gold)
    with pytest.raises(MetricError, match="not a finite number"):
        avg_gap({**neggrad, "ua": float("nan")}, gold)


# --------------------------------------------------------------------------------- residual


@pytest.mark.parametrize("kind", ["gaussian", "uniform", "pgd", "fgsm"])
def test_residual_is_exactly_one_when_unlearned_is_gold(kind):
    gold = tiny(6, d_in=8, scale=3.0)
    x, y = data(12, 50)
    for unlearned in (gold, copy.deepcopy(gold)):
        r = residual_knowledge(unlearned, gold, x, y, tau=0.1, kind=kind, c=8, batch_size=30)
        assert r.ok and r.n_used > 0
        assert r.mean == 1.0 and r.frac_gt1 == 0.0 and r.disagreement == 0.0
        used = ~torch.isnan(r.per_sample)
        assert torch.equal(r.per_sample[used], torch.ones(r.n_used, dtype=torch.float64))
        assert r.n_used + r.n_excluded == 12


def test_residual_closed_form_at_tau_zero():
    # unlearned: class 1 iff x > 0.5; gold: class 1 iff x > 0.3; all labels 1
    unl, gold = threshold_model(0.5), threshold_model(0.3)
    x = torch.tensor([0.2, 0.4, 0.6, 0.8]).view(4, 1, 1, 1)
    y = torch.ones(4, dtype=torch.long)
    r = residual_knowledge(unl, gold, x, y, tau=0.0, c=5)
    assert r.hits_gold.tolist() == [0, 5, 5, 5] and r.hits_unlearned.tolist() == [0, 0, 5, 5]
    assert r.n_excluded == 1 and r.n_used == 3
    assert r.mean == pytest.approx(2 / 3) and r.frac_gt1 == 0.0
    assert r.disagreement == pytest.approx(0.25)  # sample 0.4: 5 of 20 inputs
    assert math.isnan(r.per_sample[0]) and r.per_sample[1:].tolist() == [0.0, 1.0, 1.0]


def test_residual_closed_form_count_with_gaussian_noise():
    # unlearned recognises more (threshold 0.3 < gold's 0.5): residual knowledge, r > 1
    unl, gold = threshold_model(0.3), threshold_model(0.5)
    x = torch.tensor([0.35, 0.45, 0.55, 0.9, 0.05]).view(5, 1, 1, 1)
    y = torch.ones(5, dtype=torch.long)
    c, tau, seed = 50, 0.1, 3
    r = residual_knowledge(unl, gold, x, y, tau=tau, c=c, seed=seed, batch_size=10_000)
    # the same perturbed inputs, regenerated with the documented recipe (one chunk)
    xp = gaussian(x.repeat_interleave(c, 0), tau, torch.Generator().manual_seed(seed)).view(5, c)
    hu, hg = (xp > 0.3).sum(1), (xp > 0.5).sum(1)
    assert r.hits_unlearned.tolist() == hu.tolist() and r.hits_gold.tolist() == hg.tolist()
    used = hg > 0
    ratio = hu[used].double() / hg[used].double()
    assert r.mean == pytest.approx(float(ratio.mean()))
    assert r.frac_gt1 == pytest.approx(float((ratio > 1).double().mean()))
    assert r.n_excluded == int((~used).sum()) and r.mean > 1
    assert r.disagreement == pytest.approx(float(((xp > 0.3) != (xp > 0.5)).double().mean()))


def test_residual_reuses_gold_predictions_only_for_identical_inputs():
    """Auditing several models against one gold model runs gold once per (τ, data, seed, c); the
    numbers equal a fresh computation, and changed gold weights or seed are recomputed."""
    from obliviate.metrics import residual as rmod

    gold, unl = tiny(6, d_in=8, scale=3.0), tiny(7, d_in=8, scale=3.0)
    x, y = data(12, 50)
    calls = []
    h = gold.register_forward_hook(lambda *a: calls.append(1))
    rmod.clear_gold_cache()
    fresh = residual_knowledge(unl, gold, x, y, tau=0.1, c=8, seed=1, batch_size=30)
    n_fresh = len(calls)
    again = residual_knowledge(unl, gold, x, y, tau=0.1, c=8, seed=1, batch_size=30)
    assert len(calls) == n_fresh > 0  # gold not run again
    assert torch.equal(again.hits_gold, fresh.hits_gold)
    assert torch.equal(again.hits_unlearned, fresh.hits_unlearned)
    assert again.disagreement == fresh.disagreement and again.mean == fresh.mean
    residual_knowledge(unl, gold, x, y, tau=0.1, c=8, seed=2, batch_size=30)
    assert len(calls) > n_fresh  # another seed: other perturbations, gold runs
    n = len(calls)
    with torch.no_grad():
        next(gold.parameters()).add_(0.5)
    moved = residual_knowledge(unl, gold, x, y, tau=0.1, c=8, seed=1, batch_size=30)
    assert len(calls) > n  # other weights: recomputed
    rmod.clear_gold_cache()
    assert torch.equal(
        moved.hits_gold,
        residual_knowledge(unl, gold, x, y, tau=0.1, c=8, seed=1, batch_size=30).hits_gold,
    )
    h.remove()


def test_residual_skipped_when_gold_never_hits_and_curve():
    unl, gold = threshold_model(0.5), threshold_model(2.0)  # gold never predicts class 1
    x = torch.tensor([0.6, 0.7, 0.8]).view(3, 1, 1, 1)
    y = torch.ones(3, dtype=torch.long)
    r = residual_knowledge(unl, gold, x, y, tau=0.05, c=10)
    assert not r.ok and r.mean is None and r.frac_gt1 is None
    assert "zero gold hits" in r.skipped
    assert r.n_excluded == 3 and r.n_excluded_unlearned_hits == 3
    assert r.to_dict()["mean"].startswith("skipped: ")
    curve = residual_curve(unl, unl, x, y, taus=(0.0, 0.1, 0.3), c=4)
    assert [p.tau for p in curve] == [0.0, 0.1, 0.3] and all(p.mean == 1.0 for p in curve)


def test_residual_deterministic_and_chunking_exact_at_tau_zero():
    unl, gold = tiny(7, scale=3.0), tiny(8, scale=3.0)
    x, y = data(20, 60)
    a = residual_knowledge(unl, gold, x, y, tau=0.2, c=6, seed=1, batch_size=13)
    b = residual_knowledge(unl, gold, x, y, tau=0.2, c=6, seed=1, batch_size=13)
    assert torch.equal(a.hits_unlearned, b.hits_unlearned) and a.to_dict() == b.to_dict()
    z1 = residual_knowledge(unl, gold, x, y, tau=0.0, c=3, batch_size=1)
    z2 = residual_knowledge(unl, gold, x, y, tau=0.0, c=3, batch_size=1000)
    assert torch.equal(z1.hits_gold, z2.hits_gold) and z1.disagreement == z2.disagreement
    with pytest.raises(MetricError, match="empty"):
        residual_knowledge(unl, gold, x[:0], y[:0], tau=0.1)


# --------------------------------------------------------------------------------- contamination


def _angle_data(angles_deg: list[float], per: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for cls, a in enumerate(angles_deg):
        th = torch.deg2rad(a + 4 * (torch.rand(per, generator=g) - 0.5))
        xs.append(torch.stack([th.cos(), th.sin()], 1))
        ys.append(torch.full((per,), cls))
    return torch.cat(xs).clamp(0, 1).view(-1, 1, 1, 2), torch.cat(ys)


def _prototype_model(angles_deg: list[float], drop: int | None = None) -> nn.Module:
    m = nn.Sequential(nn.Flatten(), nn.Linear(2, len(angles_deg), bias=False))
    th = torch.deg2rad(torch.tensor(angles_deg))
    w = torch.stack([th.cos(), th.sin()], 1)
    if drop is not None:
        w[drop] = 0.0  # this class is never predicted
    with torch.no_grad():
        m[1].weight.copy_(w)
    return m


def test_contamination_ranks_nearest_class_first():
    angles = [0.0, 20.0, 90.0, 60.0]  # requested class 0; nearest 1, then 3, then 2
    x_test, y_test = _angle_data(angles, 25, 0)
    x_ref, y_ref = _angle_data(angles, 25, 1)
    original = gold = _prototype_model(angles)
    unlearned = _prototype_model(angles, drop=1)
    forget_x = x_ref[y_ref == 0][:10]
    res = knowledge_contamination(
        unlearned, gold, original, x_test, y_test, forget_x,
        forget_y=torch.zeros(10, dtype=torch.long), class_ref_x=x_ref, class_ref_y=y_ref, k=1,
    )  # fmt: skip
    assert [r.cls for r in res.rows] == [1, 3, 2] and [r.rank for r in res.rows] == [1, 2, 3]
    assert res.requested_classes == [0]
    assert res.rows[0].similarity > res.rows[1].similarity > res.rows[2].similarity
    pred_u = probs(unlearned, x_test).argmax(1)
    pred_g = probs(gold, x_test).argmax(1)
    for row in res.rows:
        sel = (y_test == row.cls).numpy()
        ref = 100 * (
            accuracy_score(y_test[sel], pred_u[sel]) - accuracy_score(y_test[sel], pred_g[sel])
        )
        assert row.delta == pytest.approx(ref)
    assert res.rows[0].delta == -100.0
    assert res.damage_nearest == 100.0 and res.damage_rest == 0.0 and res.contrast == 100.0
    full = knowledge_contamination(
        unlearned, gold, original, x_test, y_test, forget_x, forget_classes=[0], k=3
    )
    assert not full.ok and full.damage_rest is None and "k=3" in full.skipped


# --------------------------------------------------------------------------------- divergence


def test_js_divergence_zero_bounded_and_matches_scipy():
    a = tiny(9, scale=3.0)
    x, _ = data(30, 70)
    assert js_divergence(a, copy.deepcopy(a), x) == 0.0
    b = tiny(10, scale=3.0)
    pa, pb = probs(a, x), probs(b, x)
    ref = np.mean([jensenshannon(pa[i], pb[i]) ** 2 for i in range(30)])
    assert js_divergence(a, b, x) == pytest.approx(ref, rel=1e-6)
    big_a, big_b = tiny(9, scale=1e4), tiny(9, scale=-1e4)  # near one-hot, opposite classes
    v = js_divergence(big_a, big_b, x)
    assert 0 < v <= math.log(2) and v == pytest.approx(math.log(2), rel=1e-3)


def test_weight_distance():
    a, b = tiny(11), tiny(12)
    assert weight_distance(a, a) == 0.0 and weight_distance(a, copy.deepcopy(a)) == 0.0
    with torch.no_grad():
        pairs = zip(a.parameters(), b.parameters(), strict=True)
        ref = math.sqrt(sum(float((p - q).pow(2).sum()) for p, q in pairs))
    assert weight_distance(a, b) == pytest.approx(ref)
    with pytest.raises(MetricError, match="shapes differ"):
        weight_distance(a, tiny(0, d_in=9))
    other = nn.Sequential(nn.Flatten(), nn.Linear(8, 3), nn.ReLU(), nn.Linear(3, 3))
    with pytest.raises(MetricError, match="3.weight"):
        weight_distance(a, other)


def test_relearn_time():
    x, y = data(40, 80)
    original = tiny(13)
    opt = torch.optim.SGD(original.parameters(), lr=0.5)
    for _ in range(300):  # the original has learnt the forget set
        opt.zero_grad()
        F.cross_entropy(original(x), y).backward()
        opt.step()
    original.zero_grad(set_to_none=True)
    ref = copy.deepcopy(original.state_dict())
    r0 = relearn_time(original, original, x, y, max_epochs=5)
    assert r0.epochs == 0 and not r0.capped
    forgot = tiny(14)
    before = copy.deepcopy(forgot.state_dict())
    capped = relearn_time(forgot, original, x, y, lr=1e-9, max_epochs=2, threshold=0.5)
    assert capped.capped and capped.epochs == 2 and capped.to_dict()["epochs"] == ">2"
    r = relearn_time(forgot, original, x, y, lr=0.5, max_epochs=200, batch_size=8, threshold=1.05)
    assert not r.capped and 1 <= r.epochs < 200 and r.losses[-1] <= r.target_loss
    assert r == relearn_time(forgot, original, x, y, lr=0.5, max_epochs=200, batch_size=8)
    for m, sd in ((original, ref), (forgot, before)):  # inputs untouched
        assert all(torch.equal(v, sd[k]) for k, v in m.state_dict().items())


# --------------------------------------------------------------------------------- cost


def test_timer_and_speedup():
    with Timer() as t:
        sum(range(1000))
    assert t.seconds >= 0
    assert speedup(2.0, 10.0) == 5.0
    with pytest.raises(MetricError):
        speedup(0.0, 1.0)
    with pytest.raises(MetricError, match="never started"):
        _ = Timer().seconds
