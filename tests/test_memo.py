"""Content-keyed memoisation: fingerprints, the bounded LRU, and the audit's reuse of the gold and
original models' outputs and SVC MIA across audits (identical numbers, fewer forward passes)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from obliviate.audit import audit
from obliviate.data import ForgetRequest, load_dataset, make_split
from obliviate.memo import (
    LRUCache,
    clear_caches,
    fingerprint,
    module_fingerprint,
    tensor_bytes,
)
from obliviate.metrics import mia
from obliviate.metrics.mia import svc_efficacy
from obliviate.models import create_model
from obliviate.train import TrainConfig, train_model


def test_fingerprint_sees_one_value_dtype_and_shape():
    a = torch.arange(12, dtype=torch.float32)
    assert fingerprint(a) == fingerprint(a.clone())
    b = a.clone()
    b[7] += 1e-6
    assert fingerprint(b) != fingerprint(a)
    assert fingerprint(a.double()) != fingerprint(a)
    assert fingerprint(a.view(3, 4)) != fingerprint(a)
    assert fingerprint(a.numpy()) == fingerprint(a)
    assert fingerprint("x", 1) != fingerprint("x", 2)


def test_module_fingerprint_follows_the_weights():
    m = create_model("small_cnn", 10, in_channels=1, image_size=28)
    fp = module_fingerprint(m)
    assert module_fingerprint(copy.deepcopy(m)) == fp
    with torch.no_grad():
        next(m.parameters()).view(-1)[0] += 1.0
    assert module_fingerprint(m) != fp


def test_lru_cache_is_bounded_and_counts():
    c: LRUCache[int] = LRUCache("t", 2)
    c.put("a", 1)
    c.put("b", 2)
    assert c.get("a") == 1  # a is now the most recent
    c.put("c", 3)  # evicts b
    assert c.get("b") is None and c.get("c") == 3 and len(c) == 2
    assert (c.hits, c.misses) == (2, 1)
    with pytest.raises(ValueError, match="max_entries"):
        LRUCache("bad", 0)
    with pytest.raises(ValueError, match="go together"):
        LRUCache("bad", 2, max_bytes=10)


def test_lru_cache_byte_budget_evicts_oldest_and_skips_oversized_values():
    c: LRUCache[torch.Tensor] = LRUCache("t", 10, max_bytes=100, sizeof=tensor_bytes)
    c.put("a", torch.zeros(10))  # 40 bytes
    c.put("b", torch.zeros(10))  # 80
    c.put("c", torch.zeros(10))  # 120 > 100: a goes
    assert c.get("a") is None and c.get("b") is not None and c.nbytes == 80
    big = torch.zeros(50)  # 200 bytes, over the whole budget: returned, not kept
    assert c.put("big", big) is big and c.get("big") is None and len(c) == 2
    c.put("b", torch.zeros(5))  # re-put with a smaller value: the total follows
    assert c.nbytes == 60
    c.clear()
    assert c.nbytes == 0 and len(c) == 0


def test_svc_efficacy_is_memoised_on_the_features(monkeypatch):
    rng = np.random.default_rng(0)
    m, n, q = rng.beta(9, 1, 400), rng.beta(4, 1, 400), rng.beta(6, 1, 50)
    clear_caches()
    calls = []
    real = mia._svc_efficacy
    monkeypatch.setattr(mia, "_svc_efficacy", lambda *a: calls.append(1) or real(*a))
    first = svc_efficacy(m, n, q)
    assert svc_efficacy(m.copy(), n.copy(), q.copy()) == first
    assert len(calls) == 1
    q2 = q.copy()
    q2[0] = 0.5
    svc_efficacy(m, n, q2)
    assert len(calls) == 2


@pytest.fixture(scope="module")
def models():
    ds = load_dataset("synthetic", n=500, noise=0.5)
    split = make_split(ds, seed=0, val=30)
    req = ForgetRequest(split.train[ds.labels_of(split.train) == 0][:12].tolist())
    cfg = TrainConfig(epochs=1, batch_size=64, seed=0)
    orig = train_model(ds, split, "small_cnn", cfg, show_progress=False)
    gold = train_model(ds, split, "small_cnn", cfg, exclude=req, show_progress=False)
    other = train_model(
        ds, split, "small_cnn", TrainConfig(epochs=1, batch_size=64, seed=1), show_progress=False
    )
    return ds, split, req, orig.model, gold.model, other.model


def _count_forwards(model: torch.nn.Module) -> list[int]:
    n = [0]
    model.register_forward_hook(lambda *_: n.__setitem__(0, n[0] + 1))
    return n


def test_audits_against_one_gold_compute_its_outputs_once_with_identical_numbers(models):
    ds, split, req, orig, gold, other = models
    gold, orig = copy.deepcopy(gold), copy.deepcopy(orig)
    n_gold = _count_forwards(gold)

    def run(u):
        kw = dict(dataset=ds, split=split, request=req, taus=(0.1,), c=10, seed=0)
        return audit(u, gold, orig, **kw)

    clear_caches()
    run(orig)
    after_first = n_gold[0]
    assert after_first > 0
    warm = run(other)
    assert n_gold[0] == after_first  # gold's logits, features and r_τ side all reused
    clear_caches()
    cold = run(other)
    assert n_gold[0] > after_first
    for col in ("unlearned", "gold", "original"):
        assert warm.values[col] == cold.values[col]
    # a changed gold is a new key: recomputed, not served stale
    with torch.no_grad():
        next(gold.parameters()).view(-1)[0] += 0.5
    before = n_gold[0]
    run(other)
    assert n_gold[0] > before
