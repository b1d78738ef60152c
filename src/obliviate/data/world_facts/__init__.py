"""``world_facts``: a hand-written list of real-world questions for language models (issue 17).

``questions.jsonl`` (QA JSONL, :mod:`obliviate.data.qa`) holds 332 questions in 10 topics
(``group``): geography, chemistry, medicine, law, history, physics, biology, astronomy,
literature, mathematics (32–34 each). Each has a short ``answer`` (a capital, an element symbol,
an author, a unit, a year, …), an optional ``key_fact`` (the span answer accuracy looks for, e.g.
``"Everest"`` for ``"Mount Everest"``) and three plausible wrong ``perturbed_answers`` (none
contains the key fact as a whole word) for TOFU's truth ratio.

``known_smollm2.json`` lists the ids SmolLM2-135M-Instruct answers correctly (greedy, chat
template, ≤ 32 new tokens, answer accuracy's whole-word rule), written once by
``python -m obliviate.metrics.known_facts --out src/obliviate/data/world_facts/known_smollm2.json``.
Unlearning a fact is only meaningful when the model knew it, so ``load_world_facts()`` returns
that subset by default; ``filtered=False`` gives every question. The file also records the
model, command, date, run time and each generation. Measured (batch 32, 2 shared cores: 15 min
wall, 893 s of generation): 190 of 332 known: geography 26/34, medicine 26/32, history 24/33,
chemistry 23/33, biology 21/34, astronomy 20/32, physics 14/32, literature 13/34, mathematics
13/34, law 10/34. The whole-word rule misses other spellings ("1st Amendment", "8 sides",
"Newtons") and can accept a number inside a wrong one ("-18.0°C" for 0), as answer accuracy does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from obliviate.data.qa import QADataset, read_qa_jsonl
from obliviate.errors import DataFormatError

HERE = Path(__file__).resolve().parent
QUESTIONS = HERE / "questions.jsonl"
KNOWN_SMOLLM2 = HERE / "known_smollm2.json"
#: Topics (``group``) of the list, in file order.
TOPICS = (
    "geography",
    "chemistry",
    "medicine",
    "law",
    "history",
    "physics",
    "biology",
    "astronomy",
    "literature",
    "mathematics",
)


def read_known(path: str | os.PathLike[str] = KNOWN_SMOLLM2) -> dict[str, Any]:
    """The parsed output of the filter command; raises :class:`DataFormatError` naming ``path``
    when it is missing or lacks a ``known_ids`` list of strings."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataFormatError(
            f"{path} does not exist; write it with "
            f"`python -m obliviate.metrics.known_facts --out {path}`"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataFormatError(f"{path} cannot be read as JSON ({e})") from None
    ids = obj.get("known_ids") if isinstance(obj, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise DataFormatError(f"{path}: field 'known_ids' must be a list of strings")
    return obj


def load_world_facts(
    filtered: bool = True, known: str | os.PathLike[str] | None = None
) -> QADataset:
    """The ``world_facts`` questions: all 332 with ``filtered=False``, else only those the model
    answered correctly according to ``known`` (default: ``known_smollm2.json``). Pairs keep file
    order; ``meta`` records the source files. Raises :class:`DataFormatError` when ``known``
    names ids the question list lacks."""
    ds = read_qa_jsonl(QUESTIONS, name="world_facts")
    if not filtered:
        return ds
    kpath = Path(known) if known is not None else KNOWN_SMOLLM2
    info = read_known(kpath)
    want = set(info["known_ids"])
    unknown = sorted(want - set(ds.ids))
    if unknown:
        raise DataFormatError(f"{kpath}: ids not in {QUESTIONS.name}: {unknown[:10]}")
    pairs = tuple(p for p in ds.pairs if p.id in want)
    meta = {"source": str(QUESTIONS), "known": str(kpath), "model": info.get("model", "")}
    return QADataset("world_facts", pairs, meta=meta)


__all__ = ["KNOWN_SMOLLM2", "QUESTIONS", "TOPICS", "load_world_facts", "read_known"]
