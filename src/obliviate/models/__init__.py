"""Model registry and factory (timm's ``register_model`` / ``create_model`` pattern).

Contract of a registered model
------------------------------
* Input: float pixels in [0, 1], shape ``(N, C, H, W)``. The model's first layer is its own
  :class:`Normalize` (``(x - mean) / std`` per channel, stored as buffers), so perturbations and
  attacks always work in pixel units. ``mean``/``std`` default to 0.5/0.5 per channel (the
  EfficientNet-Lite default is its ImageNet preprocessing) and must have 1 or ``in_channels``
  values.
* ``features(x)`` returns the penultimate activations, shape ``(N, D)``.
* ``forward(x) == head(features(x))`` where ``head`` is an ``nn.Linear`` attribute (the final
  classifier, registered last).
* :func:`create_model` stores ``model.obliviate_spec = {"name", "kwargs"}`` (JSON-serialisable);
  ``create_model(spec["name"], **spec["kwargs"])`` rebuilds the same architecture.

Models from elsewhere need none of this: any ``nn.Module`` mapping a batch to logits works with
:func:`penultimate_features`, which falls back to hooking the input of the last ``nn.Linear``.

Adding a model is one decorator::

    @register_model("my_net", description="...", default_input=(3, 32, 32))
    def my_net(num_classes, in_channels=3, image_size=(32, 32), mean=None, std=None, **kw): ...
"""

from obliviate.models import efficientnet, resnet, small_cnn, vit  # noqa: F401  (registration)
from obliviate.models.base import (
    MODELS,
    Normalize,
    create_model,
    list_models,
    model_spec,
    penultimate_features,
    register_model,
    reinitialize_,
)

__all__ = [
    "MODELS",
    "Normalize",
    "create_model",
    "list_models",
    "model_spec",
    "penultimate_features",
    "register_model",
    "reinitialize_",
]
