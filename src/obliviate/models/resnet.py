"""CIFAR ResNets: ResNet-18 (CIFAR stem) and ResNet-20 (He et al. 2016, "Deep Residual Learning
for Image Recognition", Sec. 4.2, option-A shortcuts)."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from obliviate.errors import ConfigError
from obliviate.models.base import Normalize, register_model


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut (He et al. 2016).

    ``shortcut="B"``: 1x1 conv + BN projection when the shape changes (ResNet-18);
    ``shortcut="A"``: parameter-free subsample + zero-pad channels (CIFAR ResNet-20).
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "B") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut_kind = shortcut
        self.stride = stride
        self.pad = planes - in_planes
        self.shortcut: nn.Module = nn.Identity()
        if (stride != 1 or in_planes != planes) and shortcut == "B":
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def _short(self, x: Tensor) -> Tensor:
        if self.shortcut_kind == "A" and (self.stride != 1 or self.pad):
            x = x[:, :, :: self.stride, :: self.stride]
            lo = self.pad // 2
            return F.pad(x, (0, 0, 0, 0, lo, self.pad - lo))
        return self.shortcut(x)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self._short(x))


class CifarResNet(nn.Module):
    """3x3 stride-1 stem (no max-pool), stages of BasicBlocks, global average pool, linear head."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
        widths: Sequence[int],
        blocks: Sequence[int],
        shortcut: str,
    ) -> None:
        super().__init__()
        self.normalize = Normalize(in_channels, mean, std)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        in_planes = widths[0]
        for i, (planes, n) in enumerate(zip(widths, blocks, strict=True)):
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(BasicBlock(in_planes, planes, stride, shortcut))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature_dim = in_planes
        self.head = nn.Linear(in_planes, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.pool(self.layers(self.stem(self.normalize(x))))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


@register_model(
    description="ResNet-18, CIFAR variant (He et al. 2016; 3x3 stem, no max-pool; 11.2M params)",
    default_input=(3, 32, 32),
)
def resnet18(
    num_classes: int,
    in_channels: int = 3,
    image_size: tuple[int, int] = (32, 32),
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    width: int = 64,
) -> CifarResNet:
    """ResNet-18 for 32x32 inputs; ``width`` is the first stage's channels (64 in the paper)."""
    if width < 1:
        raise ConfigError(f"width must be >= 1, got {width}")
    return CifarResNet(
        num_classes, in_channels, mean, std, [width, 2 * width, 4 * width, 8 * width],
        [2, 2, 2, 2], shortcut="B",
    )  # fmt: skip


@register_model(
    description="ResNet-20 for CIFAR (He et al. 2016, Sec. 4.2; option-A shortcuts; 0.27M params)",
    default_input=(3, 32, 32),
)
def resnet20(
    num_classes: int,
    in_channels: int = 3,
    image_size: tuple[int, int] = (32, 32),
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    shortcut: str = "A",
) -> CifarResNet:
    """ResNet-20: 3 stages x 3 BasicBlocks, 16/32/64 channels, Kaiming-normal init.

    ``shortcut="A"`` (the paper's CIFAR choice, 269,722 params for 10 classes) zero-pads;
    ``"B"`` uses 1x1 projections where the shape changes (272,474 params).
    """
    if shortcut not in ("A", "B"):
        raise ConfigError(f"shortcut must be 'A' or 'B', got {shortcut!r}")
    model = CifarResNet(num_classes, in_channels, mean, std, [16, 32, 64], [3, 3, 3], shortcut)
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.kaiming_normal_(m.weight)
    return model
