"""Checkpoints: a folder with ``model.safetensors`` + ``meta.json`` (+ ``split.json``), no pickle.

The folder is written atomically (temp folder + rename), so a killed write never leaves a
half-written checkpoint. :func:`load_checkpoint` verifies the weights' SHA-256, the model spec and
the split hash, and refuses any mismatch with a :class:`CheckpointError` that says what differs.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import nn

import obliviate
from obliviate._io import atomic_dir, read_json, sha256_file
from obliviate.data import load_dataset
from obliviate.data.dataset import ImageDataset
from obliviate.data.request import ForgetRequest
from obliviate.data.split import Split
from obliviate.errors import CheckpointError, ObliviateError
from obliviate.models import create_model

FORMAT = "obliviate.checkpoint/1"
WEIGHTS, META, SPLIT = "model.safetensors", "meta.json", "split.json"


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (eval mode), its metadata and its split."""

    path: Path
    model: nn.Module
    meta: dict[str, Any]
    split: Split

    @property
    def request(self) -> ForgetRequest | None:
        r = self.meta.get("request")
        return None if r is None else ForgetRequest(r["ids"], r.get("name", ""), r.get("meta"))


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    split: Split,
    dataset: ImageDataset,
    train_config: dict[str, Any] | None = None,
    history: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    request: ForgetRequest | None = None,
    parent: str | None = None,
    kind: str = "trained",
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` and its provenance to folder ``path`` atomically; return the path.

    ``kind`` says what the model is (trained, gold, unlearned, healed); ``parent`` names the
    checkpoint it was derived from; ``request`` the forget request it honours.
    """
    path = Path(path)
    spec = getattr(model, "obliviate_spec", None)  # None for a user's own architecture
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_dir(path) as tmp:
        safetensors.torch.save_file(state, str(tmp / WEIGHTS))
        split.save(tmp / SPLIT)
        meta = {
            "format": FORMAT,
            "kind": kind,
            "model": spec,
            "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
            "weights_sha256": sha256_file(tmp / WEIGHTS),
            "split_hash": split.hash,
            "split_sha256": sha256_file(tmp / SPLIT),
            "dataset": {
                "name": dataset.name,
                "source": dataset.source,
                "fingerprint": dataset.fingerprint(),
                "num_classes": dataset.num_classes,
                "class_names": dataset.class_names,
            },
            "train_config": train_config,
            "history": history,
            "metrics": metrics or {},
            "request": None if request is None else request.to_dict(),
            "parent": parent,
            "versions": {
                "obliviate": obliviate.__version__,
                "torch": torch.__version__,
                "python": platform.python_version(),
            },
            **(extra or {}),
        }
        (tmp / META).write_text(
            json.dumps(meta, indent=2, sort_keys=True, default=_json_default) + "\n"
        )
    return path


def _json_default(o: Any) -> Any:
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot store {type(o).__name__} in checkpoint metadata")


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a checkpoint's ``meta.json`` without loading the weights."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(
            f"checkpoint {path} does not exist (expected a folder with {META} and {WEIGHTS})"
        )
    mp = path / META
    meta = read_json(
        mp,
        f"checkpoint {path}: {META}",
        CheckpointError,
        missing="is missing",
        corrupt="is corrupt",
    )
    fmt = meta.get("format") if isinstance(meta, dict) else None
    if fmt != FORMAT:
        raise CheckpointError(f"checkpoint {path}: {META} has format {fmt!r}, expected {FORMAT!r}")
    return meta


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: nn.Module | None = None,
    expect_model: str | None = None,
    expect_split_hash: str | None = None,
    device: str | torch.device = "cpu",
) -> Checkpoint:
    """Load and verify a checkpoint folder.

    Raises :class:`CheckpointError` if a file is missing, truncated or corrupt (SHA-256 check), if
    the weights do not fit the recorded (or the given) architecture, or if ``expect_model`` /
    ``expect_split_hash`` differ from what the checkpoint records. Pass ``model`` to load weights
    into your own (unregistered) architecture.
    """
    path = Path(path)
    meta = read_meta(path)
    wp, sp = path / WEIGHTS, path / SPLIT
    for f in (wp, sp):
        if not f.exists():
            raise CheckpointError(f"checkpoint {path}: {f.name} is missing")
    if sha256_file(wp) != meta.get("weights_sha256"):
        raise CheckpointError(
            f"checkpoint {path}: {WEIGHTS} is corrupt or truncated (SHA-256 mismatch)"
        )
    if sha256_file(sp) != meta.get("split_sha256"):
        raise CheckpointError(
            f"checkpoint {path}: {SPLIT} is corrupt or was modified (SHA-256 mismatch)"
        )
    try:
        split = Split.load(sp)
    except ObliviateError as e:
        raise CheckpointError(f"checkpoint {path}: {e}") from None
    if split.hash != meta.get("split_hash"):
        raise CheckpointError(f"checkpoint {path}: split hash does not match {META}")
    if expect_split_hash is not None and split.hash != expect_split_hash:
        raise CheckpointError(
            f"checkpoint {path} was trained on split {split.hash[:12]}, "
            f"expected split {expect_split_hash[:12]}"
        )
    spec = meta.get("model")
    if expect_model is not None:
        got = spec["name"] if spec else meta.get("model_class")
        if got != expect_model:
            raise CheckpointError(
                f"checkpoint {path} holds model {got!r}, expected {expect_model!r}"
            )
    if model is None:
        if spec is None:
            raise CheckpointError(
                f"checkpoint {path} holds an unregistered model ({meta.get('model_class')}); "
                "pass model= to load its weights into your architecture"
            )
        try:
            model = create_model(spec["name"], **spec["kwargs"])
        except ObliviateError as e:
            raise CheckpointError(
                f"checkpoint {path}: cannot rebuild model {spec['name']!r}: {e}"
            ) from None
    try:
        state = safetensors.torch.load_file(str(wp), device="cpu")
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"checkpoint {path}: cannot read {WEIGHTS}: {e}") from None
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"checkpoint {path} does not fit the architecture {type(model).__name__}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}, shape mismatch {shapes[:5]}"
        )
    model.load_state_dict(state)
    model.to(device).eval()
    return Checkpoint(path, model, meta, split)


def dataset_for(ck: Checkpoint | dict[str, Any]) -> ImageDataset:
    """Reload a checkpoint's dataset from its recorded source, verified by content."""
    meta = ck.meta if isinstance(ck, Checkpoint) else ck
    d = meta["dataset"]
    src = d.get("source") or {}
    if "name" not in src:
        raise CheckpointError(
            f"checkpoint's dataset {d.get('name')!r} was user-supplied; pass dataset= explicitly"
        )
    ds = load_dataset(src["name"], **src.get("kwargs", {}))
    if "classes" in src:
        ds = ds.select_classes(src["classes"])
    if ds.fingerprint() != d["fingerprint"]:
        raise CheckpointError(
            f"dataset {src['name']!r} as installed now differs from the one the checkpoint "
            "was trained on "
            f"(content {ds.fingerprint()[:12]} vs {d['fingerprint'][:12]})"
        )
    return ds
