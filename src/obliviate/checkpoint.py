"""Checkpoints: a folder with ``model.safetensors`` + ``meta.json`` (+ ``split.json``), no pickle.

The folder is written atomically (temp folder + rename), so a killed write never leaves a
half-written checkpoint. :func:`load_checkpoint` verifies the weights' SHA-256, the model spec and
the split hash, and refuses any mismatch with a :class:`CheckpointError` that says what differs.

``meta.json`` is checked against a schema on read (:func:`read_meta`): each field's type, and
bounds that keep a forged sidecar from allocating absurd models (an image side above
:data:`MAX_IMAGE_SIDE`, more than :data:`MAX_CLASSES` classes, a sidecar above
:data:`MAX_META_BYTES`). Weights holding NaN or ±inf are refused unless ``allow_nonfinite=True``.
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
#: Largest image height or width a checkpoint's model spec may ask for (pixels).
MAX_IMAGE_SIDE = 4096
#: Most classes (and input channels: :data:`MAX_CHANNELS`) a model spec may ask for.
MAX_CLASSES, MAX_CHANNELS = 100_000, 64
#: Largest ``meta.json`` read (bytes); a real one holds a few kB of provenance.
MAX_META_BYTES = 16 << 20


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
    """Read ``meta.json`` and check it against the checkpoint schema, without loading weights.

    Raises :class:`CheckpointError` naming the file and the field for a missing or mistyped
    field or a model spec beyond the documented bounds.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(
            f"checkpoint {path} does not exist (expected a folder with {META} and {WEIGHTS})"
        )
    mp = path / META
    if mp.is_dir():
        raise CheckpointError(f"checkpoint {path}: {META} is a folder, not a file")
    if mp.is_file() and mp.stat().st_size > MAX_META_BYTES:
        raise CheckpointError(
            f"checkpoint {path}: {META} is larger than {MAX_META_BYTES >> 20} MiB; refused"
        )
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
    problem = _meta_problem(meta)
    if problem is not None:
        raise CheckpointError(f"checkpoint {path}: {META}: {problem}")
    return meta


def _int_in(v: Any, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _model_problem(spec: Any) -> str | None:
    """What is wrong with a ``model`` spec (``{"name", "kwargs"}``), or None."""
    if spec is None:
        return None  # a user's own architecture: load_checkpoint asks for model=
    if not isinstance(spec, dict):
        return f"field 'model' must be an object {{name, kwargs}}, got {type(spec).__name__}"
    if not isinstance(spec.get("name"), str) or not spec["name"]:
        return "field 'model.name' must be a non-empty string"
    kw = spec.get("kwargs")
    if not isinstance(kw, dict):
        return f"field 'model.kwargs' must be an object, got {type(kw).__name__}"
    if "num_classes" in kw and not _int_in(kw["num_classes"], 2, MAX_CLASSES):
        return f"field 'model.kwargs.num_classes' must be an int in [2, {MAX_CLASSES}]"
    if "in_channels" in kw and not _int_in(kw["in_channels"], 1, MAX_CHANNELS):
        return f"field 'model.kwargs.in_channels' must be an int in [1, {MAX_CHANNELS}]"
    size = kw.get("image_size")
    if size is not None:
        sides = [size] if not isinstance(size, list) else size
        if len(sides) not in (1, 2) or not all(_int_in(v, 1, MAX_IMAGE_SIDE) for v in sides):
            return (
                f"field 'model.kwargs.image_size' must be 1 or 2 ints in [1, {MAX_IMAGE_SIDE}], "
                f"got {size!r:.80}"
            )
    return None


def _meta_problem(meta: dict[str, Any]) -> str | None:
    """The first schema violation of a parsed ``meta.json``, or None."""
    if "model" not in meta:
        return "field 'model' is missing"
    problem = _model_problem(meta["model"])
    if problem is not None:
        return problem
    for key in ("weights_sha256", "split_sha256", "split_hash"):
        if not isinstance(meta.get(key), str):
            return f"field {key!r} must be a string"
    d = meta.get("dataset")
    if not isinstance(d, dict):
        return f"field 'dataset' must be an object, got {type(d).__name__}"
    if not isinstance(d.get("fingerprint"), str):
        return "field 'dataset.fingerprint' must be a string"
    if "num_classes" in d and not _int_in(d["num_classes"], 2, MAX_CLASSES):
        return f"field 'dataset.num_classes' must be an int in [2, {MAX_CLASSES}]"
    names = d.get("class_names")
    if names is not None and (not isinstance(names, list) or len(names) > MAX_CLASSES):
        return f"field 'dataset.class_names' must be a list of at most {MAX_CLASSES} names"
    if d.get("source") is not None and not isinstance(d["source"], dict):
        return "field 'dataset.source' must be an object"
    r = meta.get("request")
    if r is not None and (not isinstance(r, dict) or not isinstance(r.get("ids"), list)):
        return "field 'request' must be null or an object with a list 'ids'"
    return None


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: nn.Module | None = None,
    expect_model: str | None = None,
    expect_split_hash: str | None = None,
    device: str | torch.device = "cpu",
    allow_nonfinite: bool = False,
) -> Checkpoint:
    """Load and verify a checkpoint folder.

    Raises :class:`CheckpointError` if a file is missing, truncated or corrupt (SHA-256 check), if
    the weights do not fit the recorded (or the given) architecture, or if ``expect_model`` /
    ``expect_split_hash`` differ from what the checkpoint records. Pass ``model`` to load weights
    into your own (unregistered) architecture. Weights holding NaN or ±inf are refused unless
    ``allow_nonfinite=True`` (an explicit opt-in, e.g. to inspect a diverged model).
    """
    path = Path(path)
    meta = read_meta(path)
    wp, sp = path / WEIGHTS, path / SPLIT
    for f in (wp, sp):
        if not f.exists():
            raise CheckpointError(f"checkpoint {path}: {f.name} is missing")
        if not f.is_file():
            raise CheckpointError(f"checkpoint {path}: {f.name} is a folder, not a file")
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
        except (ObliviateError, TypeError) as e:
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
    if not allow_nonfinite:
        bad = [
            k for k, v in state.items() if v.is_floating_point() and not bool(v.isfinite().all())
        ]
        if bad:
            raise CheckpointError(
                f"checkpoint {path}: {WEIGHTS} holds non-finite values (NaN or inf) in "
                f"{bad[:5]}; pass allow_nonfinite=True to load it anyway"
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
