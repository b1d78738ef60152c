"""Residual-knowledge probe (RURK: Hsu et al., "The Unseen Threat: Residual Knowledge in Machine
Unlearning under Perturbed Samples", NeurIPS 2025; papers.md §2.2–2.4).

The view of the holder of a forgotten sample (x, y): search the τ-neighbourhood of x for inputs
that the *unlearned* model still classifies as y. For every sample and τ the probe draws ``c``
perturbations (Gaussian, uniform, or FGSM / PGD that *decrease* the unlearned model's loss on y,
from random starts — :mod:`obliviate.perturb`), feeds the **same** inputs to the
unlearned and the gold model, and reports

* ``found``: the unlearned model predicts y on at least one perturbed input (residual knowledge
  is reachable from the sample);
* ``gold_also``: the gold model also predicts y on the best such input (the one with the largest
  unlearned margin ``z_y − max_{c≠y} z_c``) — then the input is simply recognisable and not
  evidence of leftover training influence; ``found & ~gold_also`` is the finding that matters;
* r_τ per sample and over the set, computed by :mod:`obliviate.metrics.residual` from the same
  hit counts (so probe and metric agree exactly for the same seed and batch size).

The best input of every sample is kept, and written for inspection (safetensors + JSON summary,
atomically) when ``out`` is given.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from rich.table import Table
from torch import Tensor, nn

from obliviate._io import atomic_dir
from obliviate.errors import ConfigError
from obliviate.metrics._common import check_xy, eval_mode
from obliviate.metrics.residual import DEFAULT_C, ResidualKnowledge, _summarise
from obliviate.perturb import PERTURBATIONS, perturb
from obliviate.unlearn.task import TensorSet

INPUTS, SUMMARY = "inputs.safetensors", "probe.json"


@dataclass
class ProbeTau:
    """The probe at one τ; every tensor has one entry (row) per forget sample."""

    tau: float
    found: Tensor  # bool: unlearned predicts y on some perturbed input
    gold_also: Tensor  # bool: gold predicts y on the best input
    hits_unlearned: Tensor  # long: perturbed inputs (of c) the unlearned model assigns to y
    hits_gold: Tensor
    best_x: Tensor  # float (N, C, H, W): the input with the largest unlearned margin for y
    best_margin: Tensor  # unlearned z_y − max_{c≠y} z_c on best_x (> 0 ⇔ predicted y)
    residual: ResidualKnowledge

    @property
    def n_found(self) -> int:
        return int(self.found.sum())

    @property
    def n_found_not_gold(self) -> int:
        """Samples where the unlearned model is fooled into y but the gold model is not."""
        return int((self.found & ~self.gold_also).sum())

    def summary(self) -> dict[str, Any]:
        return {
            "tau": self.tau,
            "n": len(self.found),
            "found": self.n_found,
            "found_and_gold": int((self.found & self.gold_also).sum()),
            "found_not_gold": self.n_found_not_gold,
            "residual": self.residual.to_dict(),
        }


@dataclass
class ProbeResult:
    """The probe over a τ grid for one forget set (``ids``/``labels`` in input order)."""

    ids: Tensor
    labels: Tensor
    kind: str
    c: int
    per_tau: list[ProbeTau]
    details: dict[str, Any] = field(default_factory=dict)
    out: Path | None = None

    def at(self, tau: float) -> ProbeTau:
        for p in self.per_tau:
            if p.tau == float(tau):
                return p
        raise KeyError(f"tau {tau} was not probed; probed: {[p.tau for p in self.per_tau]}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "c": self.c,
            "details": self.details,
            "taus": [p.summary() for p in self.per_tau],
            "samples": [
                {
                    "id": int(i),
                    "label": int(y),
                    "found": [bool(p.found[j]) for p in self.per_tau],
                    "gold_also": [bool(p.gold_also[j]) for p in self.per_tau],
                    "hits_unlearned": [int(p.hits_unlearned[j]) for p in self.per_tau],
                    "hits_gold": [int(p.hits_gold[j]) for p in self.per_tau],
                }
                for j, (i, y) in enumerate(
                    zip(self.ids.tolist(), self.labels.tolist(), strict=True)
                )
            ],
        }

    def table(self) -> Table:
        t = Table(
            title=f"residual-knowledge probe: {len(self.ids)} forget samples, {self.kind}, "
            f"c={self.c} perturbations each"
        )
        for col in ("τ", "found", "found & gold", "found, not gold", "r_τ mean", "r_τ > 1"):
            t.add_column(col, justify="right")
        for p in self.per_tau:
            r = p.residual
            t.add_row(
                f"{p.tau:g}",
                f"{p.n_found}/{len(p.found)}",
                str(int((p.found & p.gold_also).sum())),
                str(p.n_found_not_gold),
                f"{r.mean:.3f}" if r.ok else "skipped",
                f"{100 * r.frac_gt1:.1f} %" if r.ok else "skipped",
            )
        return t

    def __rich__(self) -> Table:
        return self.table()

    def save(self, out: str | os.PathLike[str]) -> Path:
        """Write ``inputs.safetensors`` (ids, labels, and per τ the best inputs, found, gold_also,
        hits) and ``probe.json`` into folder ``out``, atomically (both or neither)."""
        out = Path(out)
        tensors: dict[str, Tensor] = {"ids": self.ids.cpu(), "labels": self.labels.cpu()}
        for i, p in enumerate(self.per_tau):
            tensors[f"tau{i}.best_x"] = p.best_x.float().cpu().contiguous()
            tensors[f"tau{i}.best_margin"] = p.best_margin.float().cpu()
            tensors[f"tau{i}.found"] = p.found.cpu()
            tensors[f"tau{i}.gold_also"] = p.gold_also.cpu()
            tensors[f"tau{i}.hits_unlearned"] = p.hits_unlearned.cpu()
            tensors[f"tau{i}.hits_gold"] = p.hits_gold.cpu()
        summary = self.to_dict()
        summary["files"] = {"inputs": INPUTS, "tau_keys": "tau{i}.best_x etc., i = index in taus"}
        with atomic_dir(out) as tmp:
            safetensors.torch.save_file(tensors, str(tmp / INPUTS))
            (tmp / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
        self.out = out
        return out


def _margin(logits: Tensor, y: Tensor) -> Tensor:
    """``z_y − max_{c≠y} z_c`` per row."""
    zy = logits.gather(1, y.view(-1, 1)).squeeze(1)
    other = logits.scatter(1, y.view(-1, 1), float("-inf")).amax(1)
    return zy - other


def probe(
    unlearned: nn.Module,
    gold: nn.Module,
    forget: TensorSet | tuple[Tensor, Tensor, Tensor],
    *,
    taus: Sequence[float] = (0.03,),
    kind: str = "pgd",
    c: int | None = None,
    seed: int = 0,
    steps: int | None = None,
    alpha: float | None = None,
    batch_size: int = 2000,
    device: str | torch.device = "cpu",
    out: str | os.PathLike[str] | None = None,
) -> ProbeResult:
    """Probe the τ-neighbourhoods of the forget samples for residual knowledge (RURK).

    ``c`` defaults to the residual metric's (100 for noise, 20 for FGSM/PGD). ``steps`` (PGD)
    and ``alpha`` (FGSM/PGD step size) go to the attack, which runs against the UNLEARNED model
    with ``direction="decrease"`` from random starts; giving them for a noise kind is a
    :class:`ConfigError`. For each τ the generator restarts from ``seed`` and samples are
    chunked exactly as :func:`obliviate.metrics.residual.residual_knowledge` does, so the hit
    counts equal that metric's for the same seed and ``batch_size``. Both models must be on
    ``device``; neither is modified. With ``out`` the result is saved there (:meth:`save`).
    """
    if isinstance(forget, TensorSet):
        x, y, ids = forget.x, forget.y, forget.ids
    elif isinstance(forget, tuple | list) and len(forget) == 3:
        x, y, ids = forget
    else:
        raise ConfigError(
            f"forget must be a TensorSet or an (x, y, ids) tuple, got {type(forget).__name__}"
        )
    check_xy(x, y, "forget set")
    ids = torch.as_tensor(ids, dtype=torch.int64).reshape(-1)
    if len(ids) != len(y):
        raise ConfigError(f"forget set: {len(ids)} ids for {len(y)} samples")
    if x.is_floating_point() and len(x) and (float(x.min()) < 0 or float(x.max()) > 1):
        raise ConfigError("forget inputs must be float pixels in [0, 1]")
    PERTURBATIONS.get(kind)
    needs_model = PERTURBATIONS.meta(kind)["needs_model"]
    attack_kw: dict[str, Any] = {}
    for name, val, kinds in (("steps", steps, ("pgd",)), ("alpha", alpha, ("pgd", "fgsm"))):
        if val is None:
            continue
        if kind not in kinds:
            raise ConfigError(f"option {name!r} applies to {'/'.join(kinds)}, not to {kind!r}")
        attack_kw[name] = val
    if needs_model:
        attack_kw.update(random_start=True, direction="decrease")
    c = DEFAULT_C.get(kind, 100) if c is None else int(c)
    if c < 1:
        raise ConfigError(f"c must be >= 1, got {c}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if not taus:
        raise ConfigError("taus must name at least one tau")
    per_tau = [
        _probe_tau(
            unlearned, gold, x, y.long(), float(t), kind, c, seed, batch_size, device, attack_kw
        )
        for t in taus
    ]
    res = ProbeResult(
        ids,
        y.long().cpu(),
        kind,
        c,
        per_tau,
        {
            "seed": int(seed),
            "attack": {k: v for k, v in attack_kw.items()},
            "batch_size": batch_size,
        },
    )
    if out is not None:
        res.save(out)
    return res


def _probe_tau(
    unlearned: nn.Module,
    gold: nn.Module,
    x: Tensor,
    y: Tensor,
    tau: float,
    kind: str,
    c: int,
    seed: int,
    batch_size: int,
    device: str | torch.device,
    attack_kw: dict[str, Any],
) -> ProbeTau:
    """One τ: c perturbations per sample (one at τ = 0, counted c times, as the metric does)."""
    needs_model = PERTURBATIONS.meta(kind)["needs_model"]
    gen = torch.Generator().manual_seed(seed)
    n = len(x)
    reps = 1 if tau == 0.0 else c
    mult = c // reps
    per_chunk = max(1, batch_size // reps)
    hits_u = torch.zeros(n, dtype=torch.long)
    hits_g = torch.zeros(n, dtype=torch.long)
    best_x = torch.empty(x.shape, dtype=torch.float32)
    best_m = torch.empty(n, dtype=torch.float32)
    gold_also = torch.zeros(n, dtype=torch.bool)
    n_disagree = 0
    for i in range(0, n, per_chunk):
        xc = x[i : i + per_chunk].to(device)
        yc = y[i : i + per_chunk].to(device)
        m = len(xc)
        xr, yr = xc.repeat_interleave(reps, dim=0), yc.repeat_interleave(reps)
        xp = perturb(kind, unlearned if needs_model else None, xr, yr, tau, gen, **attack_kw)
        with eval_mode(unlearned, gold), torch.inference_mode():
            zu = unlearned(xp).float()
            zg = zu if gold is unlearned else gold(xp).float()
        pu, pg = zu.argmax(1), zg.argmax(1)
        hits_u[i : i + m] = (pu == yr).view(m, reps).sum(1).cpu() * mult
        hits_g[i : i + m] = (pg == yr).view(m, reps).sum(1).cpu() * mult
        n_disagree += int((pu != pg).sum()) * mult
        margin = _margin(zu, yr).view(m, reps)
        j = margin.argmax(1)  # first maximum: deterministic
        rows = torch.arange(m, device=margin.device) * reps + j
        best_x[i : i + m] = xp[rows].float().cpu()
        best_m[i : i + m] = margin[torch.arange(m, device=margin.device), j].cpu()
        gold_also[i : i + m] = (pg[rows] == yr[rows]).cpu()
    found = hits_u > 0
    return ProbeTau(
        tau=tau,
        found=found,
        gold_also=gold_also,
        hits_unlearned=hits_u,
        hits_gold=hits_g,
        best_x=best_x,
        best_margin=best_m,
        residual=_summarise(hits_u, hits_g, n_disagree, tau, kind, c),
    )
