"""Model registry, factory and the shared pieces every registered architecture uses.

See :mod:`obliviate.models` for the contract a registered model follows.
"""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from obliviate.errors import ConfigError
from obliviate.registry import Registry

#: A factory builds a model from ``(num_classes, in_channels, image_size, mean, std, **kwargs)``.
ModelFactory = Callable[..., nn.Module]

MODELS: Registry[ModelFactory] = Registry("model")

SPEC_ATTR = "obliviate_spec"


def register_model(
    name: str | None = None,
    *,
    description: str = "",
    default_input: tuple[int, int, int] = (1, 28, 28),
    **meta: Any,
) -> Callable[[ModelFactory], ModelFactory]:
    """Register a model factory under ``name`` (default: the function's name).

    ``default_input`` is the ``(C, H, W)`` the model is meant for; ``description`` (cite the
    paper) and any other keyword are stored as metadata, readable with ``MODELS.meta(name)``.
    """

    def deco(fn: ModelFactory) -> ModelFactory:
        key = name or fn.__name__
        return MODELS.register(
            key,
            description=description or (fn.__doc__ or "").strip().split("\n")[0],
            default_input=tuple(default_input),
            **meta,
        )(fn)

    return deco


def list_models() -> list[str]:
    """Sorted names of every registered model."""
    return MODELS.names()


def _as_image_size(image_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    try:
        h, w = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise ConfigError(f"image_size must be an int or (H, W), got {image_size!r}") from None
    if h < 1 or w < 1:
        raise ConfigError(f"image_size must be positive, got {image_size!r}")
    return h, w


def _as_float_list(name: str, value: float | Sequence[float] | Tensor | None) -> list[float] | None:
    if value is None:
        return None
    if isinstance(value, Tensor):
        value = value.flatten().tolist()
    if isinstance(value, int | float):
        value = [value]
    try:
        return [float(v) for v in value]
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a float or sequence of floats, got {value!r}") from None


def create_model(
    name: str,
    num_classes: int,
    in_channels: int = 1,
    image_size: int | Sequence[int] = (28, 28),
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build the registered model ``name``; the result carries ``obliviate_spec`` for checkpoints.

    Inputs are float pixels in [0, 1], shape ``(N, in_channels, *image_size)``; the model applies
    its own normalisation with ``mean``/``std`` (per channel, or one value for all channels;
    ``None`` picks the model's default). Raises :class:`UnknownNameError` for an unknown name and
    :class:`ConfigError` for a bad option.
    """
    factory = MODELS.get(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ConfigError(f"in_channels must be an int >= 1, got {in_channels!r}")
    size = _as_image_size(image_size)
    mean_l = _as_float_list("mean", mean)
    std_l = _as_float_list("std", std)
    spec_kwargs: dict[str, Any] = {
        "num_classes": num_classes,
        "in_channels": in_channels,
        "image_size": list(size),
        "mean": mean_l,
        "std": std_l,
        **kwargs,
    }
    try:
        spec_kwargs = json.loads(json.dumps(spec_kwargs))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model {name!r}: kwargs must be JSON-serialisable ({exc})") from None
    call = dict(
        num_classes=num_classes, in_channels=in_channels, image_size=size, mean=mean_l, std=std_l
    )
    try:
        inspect.signature(factory).bind(**call, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"model {name!r}: bad arguments ({exc})") from None
    model = factory(**call, **kwargs)
    setattr(model, SPEC_ATTR, {"name": name, "kwargs": spec_kwargs})
    return model


def model_spec(model: nn.Module) -> dict[str, Any]:
    """``{"name", "kwargs"}`` that rebuild ``model`` via ``create_model(name, **kwargs)``."""
    spec = getattr(model, SPEC_ATTR, None)
    if spec is None:
        raise ConfigError(
            f"{type(model).__name__} was not built by obliviate.models.create_model; "
            "it has no model spec (save its state dict and rebuild it yourself)"
        )
    return copy.deepcopy(spec)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; mean/std are buffers so they travel with the weights."""

    mean: Tensor
    std: Tensor

    def __init__(
        self,
        in_channels: int,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        default: tuple[float, float] = (0.5, 0.5),
    ) -> None:
        super().__init__()
        m = list(mean) if mean is not None else [default[0]]
        s = list(std) if std is not None else [default[1]]
        for label, vals in (("mean", m), ("std", s)):
            if len(vals) not in (1, in_channels):
                raise ConfigError(
                    f"{label} has {len(vals)} values; it needs 1 or in_channels={in_channels}"
                )
        if any(v <= 0 for v in s):
            raise ConfigError(f"std must be positive, got {s}")
        self.register_buffer("mean", torch.tensor(m, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(s, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def _has_features_method(model: nn.Module) -> bool:
    feats = getattr(model, "features", None)
    # torchvision-style ``features`` submodules (VGG, AlexNet) are not penultimate activations.
    return callable(feats) and not isinstance(feats, nn.Module)


def penultimate_features(model: nn.Module, x: Tensor) -> Tensor:
    """Penultimate activations of ``model`` on ``x``.

    Uses ``model.features(x)`` when the model defines it; otherwise runs ``model(x)`` and returns
    the input of the last ``nn.Linear`` (in module registration order). Grad mode and train/eval
    mode are left to the caller.
    """
    if _has_features_method(model):
        return model.features(x)  # type: ignore[operator]
    last: nn.Linear | None = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    if last is None:
        raise ConfigError(
            f"penultimate_features: {type(model).__name__} has no features() method and no "
            "nn.Linear layer, so its penultimate layer is unknown; give it a features(x) method"
        )
    captured: list[Tensor] = []

    def hook(_mod: nn.Module, args: tuple[Any, ...]) -> None:
        captured.append(args[0])

    handle = last.register_forward_pre_hook(hook)
    try:
        model(x)
    finally:
        handle.remove()
    if not captured:
        raise ConfigError(
            f"penultimate_features: the last nn.Linear of {type(model).__name__} was not called "
            "during forward; give the model a features(x) method"
        )
    return captured[-1]


def reinitialize_(model: nn.Module, seed: int) -> nn.Module:
    """Re-initialise every parameter of ``model`` in place under ``torch.manual_seed(seed)``
    with its modules' own ``reset_parameters`` / ``_reset_parameters``; return ``model``.

    A fresh draw from the architecture's initial distribution (how the gold ``retrain`` and SISA
    shards rebuild a user's own, unregistered module), not a replay of how it was first built.
    Raises :class:`ConfigError` naming the parameters no reset method covers (keeping their
    trained values would leak the data they were trained on)."""
    torch.manual_seed(int(seed))
    uncovered: list[str] = []
    for name, mod in model.named_modules():
        reset = getattr(mod, "reset_parameters", None) or getattr(mod, "_reset_parameters", None)
        if callable(reset):
            reset()
        else:
            uncovered += [
                f"{name}.{p}" if name else p for p, _ in mod.named_parameters(recurse=False)
            ]
    if uncovered:
        raise ConfigError(
            f"cannot re-initialise {type(model).__name__}: parameters {uncovered[:10]} belong to "
            "modules without reset_parameters(); add one, or build the model with "
            "obliviate.models.create_model so it can be rebuilt from its spec"
        )
    return model
