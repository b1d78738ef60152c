"""Membership-inference metrics: SVC MIA efficacy, a population (loss-threshold) MIA, offline LiRA.

* :func:`mia_efficacy` — SalUn's "MIA-efficacy" (Jia et al., NeurIPS 2023), RURK's "MIA Acc"
  (Hsu et al., NeurIPS 2025, Table 1): an ``SVC(C=3, gamma="auto", kernel="rbf")`` learns member
  (retain, label 1) vs non-member (test, label 0) from one scalar feature of the model's output,
  then classifies the forget set; the metric is 100 × the fraction predicted non-member.
* :func:`population_mia` — loss-threshold attack (Yeom et al. 2018): score = −loss; ROC AUC and
  TPR at 1 % FPR.
* :func:`lira_offline` — offline LiRA (Carlini et al., S&P 2022) with OUT shadow models only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from obliviate.errors import ConfigError
from obliviate.memo import LRUCache, fingerprint
from obliviate.metrics._common import METRICS, MetricError, check_xy, logits

Feature = Literal["prob", "entropy", "m_entropy", "loss"]
FEATURES: tuple[str, ...] = ("prob", "entropy", "m_entropy", "loss")
XY = tuple[Tensor, Tensor]


def features_from_logits(z: Tensor, y: Tensor, feature: Feature = "prob") -> np.ndarray:
    """One scalar MIA feature per sample from logits ``z`` (N, K) and labels ``y`` (float64).

    ``prob``: softmax probability of the true class (SalUn's "confidence"); ``loss``: cross
    entropy −log p_y; ``entropy``: −Σ p log p; ``m_entropy``: modified entropy of Song & Mittal
    (USENIX Sec. 2021), −(1−p_y) log p_y − Σ_{i≠y} p_i log(1−p_i).
    """
    if feature not in FEATURES:
        raise ConfigError(f"feature must be one of {FEATURES}, got {feature!r}")
    z = z.double()
    y = y.long().cpu()
    logp = torch.log_softmax(z, dim=1)
    p = logp.exp()
    logp_y = logp.gather(1, y[:, None]).squeeze(1)
    if feature == "prob":
        out = logp_y.exp()
    elif feature == "loss":
        out = -logp_y
    elif feature == "entropy":
        out = -(p * logp).sum(1)
    else:  # m_entropy
        p_y = logp_y.exp()
        log1m = torch.log(torch.clamp(1.0 - p, min=1e-30))
        other = (p * log1m).scatter(1, y[:, None], 0.0).sum(1)
        out = -(1.0 - p_y) * logp_y - other
    return out.numpy()


def mia_features(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    feature: Feature = "prob",
    batch_size: int = 1000,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """MIA ``feature`` of ``model`` on each sample of (x, y) (:func:`features_from_logits`)."""
    check_xy(x, y, "MIA set")
    return features_from_logits(logits(model, x, batch_size, device), y, feature)


def balanced_sample(n_retain: int, n_test: int, n_max: int, seed: int) -> tuple[np.ndarray, ...]:
    """Indices of a balanced seeded sample: ``n = min(n_retain, n_test, n_max)`` of each set.

    Recipe (public, so results can be reproduced): ``rng = np.random.default_rng(seed)``;
    retain indices ``rng.choice(n_retain, n, replace=False)``, then test indices
    ``rng.choice(n_test, n, replace=False)``, each sorted.
    """
    if n_max < 1:
        raise ConfigError(f"n_max must be >= 1, got {n_max}")
    n = min(n_retain, n_test, n_max)
    if n < 1:
        raise MetricError(
            f"MIA needs at least one retain and one test sample (got {n_retain} and {n_test})"
        )
    rng = np.random.default_rng(seed)
    idx_r = np.sort(rng.choice(n_retain, n, replace=False))
    idx_t = np.sort(rng.choice(n_test, n, replace=False))
    return idx_r, idx_t


@METRICS.register(
    "mia_efficacy",
    higher_is_better=None,
    unit="%",
    description="SVC MIA efficacy: % of forget samples an SVC (retain=member vs test=non-member, "
    "on the true-class probability) calls non-member; ideal is the gold model's value",
    reference="SalUn (Jia et al. 2023); RURK (Hsu et al. 2025) 'MIA Acc'",
)
def mia_efficacy(
    model: nn.Module,
    retain: XY,
    test: XY,
    forget: XY,
    feature: Feature = "prob",
    n_max: int = 5000,
    seed: int = 0,
    batch_size: int = 1000,
    device: str | torch.device = "cpu",
) -> float:
    """100 × fraction of the forget set predicted non-member by ``SVC(C=3, gamma="auto", rbf)``.

    The SVC is fitted on ``feature`` of a balanced seeded sample (:func:`balanced_sample`) of
    retain (label 1) and test (label 0), ``min(len(retain), len(test), n_max)`` of each. For
    class unlearning RURK fits retain vs forget and evaluates held-out forget-class data: pass
    those sets as ``test`` and ``forget``. Deterministic for a given ``seed``.
    """
    for name, (x, y) in (("retain", retain), ("test", test), ("forget", forget)):
        check_xy(x, y, f"MIA {name} set")
    idx_r, idx_t = balanced_sample(len(retain[0]), len(test[0]), n_max, seed)
    ir, it = torch.as_tensor(idx_r), torch.as_tensor(idx_t)
    f_r = mia_features(model, retain[0][ir], retain[1][ir], feature, batch_size, device)
    f_t = mia_features(model, test[0][it], test[1][it], feature, batch_size, device)
    f_f = mia_features(model, forget[0], forget[1], feature, batch_size, device)
    return svc_efficacy(f_r, f_t, f_f)


#: SVC MIA results keyed by the fingerprint of their three feature vectors: auditing many models
#: against the same gold and original refits neither reference's SVC (the fit is deterministic).
_SVC_RESULTS: LRUCache[float] = LRUCache("SVC MIA", 256)


def svc_efficacy(f_members: np.ndarray, f_nonmembers: np.ndarray, f_query: np.ndarray) -> float:
    """Fit ``SVC(C=3, gamma="auto", kernel="rbf")`` on scalar features of members (label 1) and
    non-members (label 0); return 100 × the fraction of ``f_query`` predicted non-member.

    Memoised on the features' contents (the fit is deterministic, so a repeat is identical)."""
    if len(f_members) == 0 or len(f_nonmembers) == 0 or len(f_query) == 0:
        raise MetricError(
            "SVC MIA needs members, non-members and query samples "
            f"(got {len(f_members)}, {len(f_nonmembers)}, {len(f_query)})"
        )
    arrays = [np.asarray(f, dtype=np.float64) for f in (f_members, f_nonmembers, f_query)]
    key = fingerprint(*arrays)
    hit = _SVC_RESULTS.get(key)
    return hit if hit is not None else _SVC_RESULTS.put(key, _svc_efficacy(*arrays))


def _svc_efficacy(f_members: np.ndarray, f_nonmembers: np.ndarray, f_query: np.ndarray) -> float:
    from sklearn.svm import SVC

    x_fit = np.concatenate([f_members, f_nonmembers]).reshape(-1, 1)
    y_fit = np.concatenate([np.ones(len(f_members)), np.zeros(len(f_nonmembers))])
    clf = SVC(C=3, gamma="auto", kernel="rbf")
    clf.fit(x_fit, y_fit)
    pred = clf.predict(np.asarray(f_query).reshape(-1, 1))
    return 100.0 * float(np.mean(pred == 0))


def mia_efficacy_from_logits(
    retain: XY,
    test: XY,
    forget: XY,
    feature: Feature = "prob",
    n_max: int = 5000,
    seed: int = 0,
) -> float:
    """:func:`mia_efficacy` from precomputed logits: each pair is (logits (N, K), labels (N,)).

    Same balanced seeded sample (:func:`balanced_sample`) over the rows of the retain and test
    logits, so it equals :func:`mia_efficacy` on the same sets and seed (the audit computes each
    model's logits once and reuses them across metrics).
    """
    for name, (z, y) in (("retain", retain), ("test", test), ("forget", forget)):
        check_xy(z, y, f"MIA {name} logits")
    idx_r, idx_t = balanced_sample(len(retain[0]), len(test[0]), n_max, seed)
    ir, it = torch.as_tensor(idx_r), torch.as_tensor(idx_t)
    f_r = features_from_logits(retain[0][ir], retain[1][ir], feature)
    f_t = features_from_logits(test[0][it], test[1][it], feature)
    f_f = features_from_logits(forget[0], forget[1], feature)
    return svc_efficacy(f_r, f_t, f_f)


@dataclass(frozen=True)
class PopulationMIAResult:
    """ROC AUC and TPR at 1 % FPR of a threshold attack (members = positive class).

    ``tpr_at_1pct_fpr`` is the largest TPR among ROC points with FPR ≤ 0.01 (no interpolation;
    with fewer than 100 non-members it means "TPR at zero false positives").
    """

    auc: float
    tpr_at_1pct_fpr: float
    n_members: int
    n_nonmembers: int

    def to_dict(self) -> dict[str, float | int]:
        return {
            "auc": self.auc,
            "tpr_at_1pct_fpr": self.tpr_at_1pct_fpr,
            "n_members": self.n_members,
            "n_nonmembers": self.n_nonmembers,
        }


def _member_scores(
    member_scores: np.ndarray | Tensor, nonmember_scores: np.ndarray | Tensor, what: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated float64 (members, non-members, labels 1/0) for a score-threshold attack."""
    sm = np.asarray(member_scores, dtype=np.float64).ravel()
    sn = np.asarray(nonmember_scores, dtype=np.float64).ravel()
    if len(sm) == 0 or len(sn) == 0:
        raise MetricError(f"{what} needs members and non-members (got {len(sm)} and {len(sn)})")
    if not (np.isfinite(sm).all() and np.isfinite(sn).all()):
        raise MetricError("MIA scores contain NaN or inf")
    return sm, sn, np.concatenate([np.ones(len(sm)), np.zeros(len(sn))])


def population_mia_from_scores(
    member_scores: np.ndarray | Tensor, nonmember_scores: np.ndarray | Tensor
) -> PopulationMIAResult:
    """AUC (``sklearn.metrics.roc_auc_score``) and TPR at 1 % FPR; higher score = "member"."""
    from sklearn.metrics import roc_auc_score, roc_curve

    sm, sn, labels = _member_scores(member_scores, nonmember_scores, "a population MIA")
    scores = np.concatenate([sm, sn])
    auc = float(roc_auc_score(labels, scores))
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    tpr_low = float(tpr[fpr <= 0.01].max())  # fpr[0] == 0, so never empty
    return PopulationMIAResult(auc, tpr_low, len(sm), len(sn))


@METRICS.register(
    "population_mia",
    higher_is_better=False,
    unit="AUC in [0, 1]",
    description="loss-threshold MIA (score = −loss): ROC AUC and TPR at 1 % FPR, members vs "
    "non-members; 0.5 = no leakage",
    reference="Yeom et al. 2018; Carlini et al. 2022 (TPR at low FPR)",
)
def population_mia(
    model: nn.Module,
    members: XY,
    nonmembers: XY,
    batch_size: int = 1000,
    device: str | torch.device = "cpu",
) -> PopulationMIAResult:
    """Loss-threshold attack, score = −cross-entropy: members (e.g. forget) vs non-members."""
    check_xy(*members, "MIA members")
    check_xy(*nonmembers, "MIA non-members")
    s_m = -mia_features(model, *members, feature="loss", batch_size=batch_size, device=device)
    s_n = -mia_features(model, *nonmembers, feature="loss", batch_size=batch_size, device=device)
    return population_mia_from_scores(s_m, s_n)


def population_mia_from_logits(members: XY, nonmembers: XY) -> PopulationMIAResult:
    """:func:`population_mia` from precomputed (logits, labels) pairs: score = −cross-entropy."""
    check_xy(*members, "MIA member logits")
    check_xy(*nonmembers, "MIA non-member logits")
    s_m = -features_from_logits(members[0], members[1], "loss")
    s_n = -features_from_logits(nonmembers[0], nonmembers[1], "loss")
    return population_mia_from_scores(s_m, s_n)


def youden_threshold(
    member_scores: np.ndarray | Tensor, nonmember_scores: np.ndarray | Tensor
) -> float:
    """Score threshold maximising TPR − FPR (Youden's J) of "member iff score ≥ threshold".

    Independent of the member / non-member ratio. Ties in J go to the higher threshold
    (the fewer false positives). Use it to apply an attack calibrated on known members and
    non-members to another set: ``member_rate = mean(scores >= threshold)``.
    """
    from sklearn.metrics import roc_curve

    sm, sn, labels = _member_scores(member_scores, nonmember_scores, "a threshold attack")
    fpr, tpr, thr = roc_curve(labels, np.concatenate([sm, sn]), drop_intermediate=False)
    j = tpr - fpr
    best = int(np.argmax(j))  # first maximum = highest threshold (thresholds decrease)
    t = float(thr[best])
    # roc_curve's first threshold is +inf ("nobody is a member"); keep it finite and equivalent
    return t if np.isfinite(t) else float(np.nextafter(max(sm.max(), sn.max()), np.inf))


# ----------------------------------------------------------------------------------------- LiRA


def lira_phi(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    batch_size: int = 1000,
    device: str | torch.device = "cpu",
) -> Tensor:
    """Logit-scaled true-class confidence φ = log(p_y / (1 − p_y)) (float64), computed stably as
    z_y − logsumexp_{j≠y} z_j (Carlini et al. 2022, §4)."""
    check_xy(x, y, "LiRA set")
    z = logits(model, x, batch_size, device).double()
    yy = y.long().cpu()[:, None]
    z_y = z.gather(1, yy).squeeze(1)
    z_other = z.scatter(1, yy, float("-inf"))
    return z_y - torch.logsumexp(z_other, dim=1)


@dataclass
class LiRAResult:
    """Offline LiRA output. ``score`` = Φ((φ − μ_out)/σ_out) (higher = more likely member);
    ``p_value`` = 1 − score, the one-sided test's p-value. ``auc``/``tpr_at_1pct_fpr`` are set
    when membership labels were given; otherwise ``auc_skipped`` says why they are absent."""

    score: Tensor
    p_value: Tensor
    phi: Tensor
    mu_out: Tensor
    sigma_out: Tensor
    n_shadows: int
    auc: float | None = None
    tpr_at_1pct_fpr: float | None = None
    auc_skipped: str | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "n_shadows": self.n_shadows,
            "mean_score": float(self.score.mean()),
        }
        if self.auc_skipped is None:
            out.update(auc=self.auc, tpr_at_1pct_fpr=self.tpr_at_1pct_fpr)
        else:
            out["auc"] = f"skipped: {self.auc_skipped}"
        return out


@METRICS.register(
    "lira_offline",
    higher_is_better=False,
    unit="AUC in [0, 1]",
    description="offline LiRA with OUT shadow models; per-sample membership scores and AUC "
    "when membership labels are given",
    reference="Carlini et al., 'Membership Inference Attacks From First Principles', S&P 2022",
)
def lira_offline(
    target_model: nn.Module,
    shadow_models: Sequence[nn.Module],
    x: Tensor,
    y: Tensor,
    membership: Tensor | None = None,
    fix_variance: bool = True,
    batch_size: int = 1000,
    device: str | torch.device = "cpu",
) -> LiRAResult:
    """Offline LiRA: per sample, fit N(μ_out, σ_out²) to φ of the OUT shadows and test the target's
    φ one-sidedly: score = Φ((φ − μ_out)/σ_out), p-value = 1 − score.

    ``shadow_models`` must be trained WITHOUT (x, y) (see :func:`train_shadow_models`); at least
    2 are needed. ``fix_variance=True`` pools the within-sample variance over all samples
    (Carlini et al. recommend a global variance with few shadows); ``False`` uses each sample's
    own std. No augmentation queries are used. ``membership`` (bool/0-1 per sample) enables AUC.
    """
    from scipy.stats import norm

    check_xy(x, y, "LiRA set")
    k = len(shadow_models)
    if k < 2:
        raise MetricError(f"offline LiRA needs >= 2 OUT shadow models to fit a variance, got {k}")
    phi_t = lira_phi(target_model, x, y, batch_size, device)
    phi_s = torch.stack([lira_phi(m, x, y, batch_size, device) for m in shadow_models])  # (K, N)
    mu = phi_s.mean(0)
    if fix_variance:
        sigma = ((phi_s - mu).pow(2).sum() / (phi_s.numel() - len(mu))).sqrt().expand_as(mu)
    else:
        sigma = phi_s.std(0, unbiased=True)
    sigma = sigma.clamp(min=1e-12)
    zscore = ((phi_t - mu) / sigma).numpy()
    score = torch.from_numpy(norm.cdf(zscore))
    p_value = torch.from_numpy(norm.sf(zscore))
    res = LiRAResult(score, p_value, phi_t, mu, sigma.clone(), k)
    if membership is None:
        res.auc_skipped = "no membership labels given"
        return res
    mem = torch.as_tensor(membership).bool().cpu()
    if mem.shape != (len(x),):
        raise MetricError(f"membership must have one entry per sample, got {tuple(mem.shape)}")
    if mem.all() or not mem.any():
        res.auc_skipped = "membership labels contain a single class; AUC undefined"
        return res
    pm = population_mia_from_scores(score[mem].numpy(), score[~mem].numpy())
    res.auc, res.tpr_at_1pct_fpr = pm.auc, pm.tpr_at_1pct_fpr
    return res


def train_shadow_models(
    train_fn: Callable[[Tensor, Tensor, int], nn.Module],
    x: Tensor,
    y: Tensor,
    k: int,
    fraction: float = 0.5,
    seed: int = 0,
    exclude: Tensor | None = None,
) -> list[nn.Module]:
    """Train ``k`` OUT shadow models, each on a seeded random ``fraction`` of (x, y).

    ``train_fn(x_subset, y_subset, seed) -> model`` is the shadow recipe (ideally the target's
    own). ``exclude`` (indices or a bool mask into x) is never used for training — pass the
    samples LiRA will score, so every shadow is OUT for them. Shadow ``i`` uses seed ``seed + i``.
    """
    check_xy(x, y, "shadow pool")
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"fraction must be in (0, 1], got {fraction}")
    allowed = torch.ones(len(x), dtype=torch.bool)
    if exclude is not None:
        ex = torch.as_tensor(exclude)
        if ex.dtype == torch.bool:
            allowed &= ~ex.cpu()
        else:
            allowed[ex.long().cpu()] = False
    pool = torch.nonzero(allowed).squeeze(1)
    n = max(1, round(fraction * len(pool)))
    if len(pool) == 0:
        raise MetricError("no samples left to train shadow models after exclusion")
    models = []
    for i in range(k):
        g = torch.Generator().manual_seed(seed + i)
        idx = pool[torch.randperm(len(pool), generator=g)[:n]].sort().values
        models.append(train_fn(x[idx], y[idx], seed + i))
    return models
