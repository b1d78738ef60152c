"""The small MNIST CNN used by the healing paper (two conv blocks, one hidden FC layer)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from obliviate.errors import ConfigError
from obliviate.models.base import Normalize, register_model


class SmallCNN(nn.Module):
    """conv3x3(32)-ReLU-pool2, conv3x3(64)-ReLU-pool2, fc128-ReLU, fc(num_classes).

    421,642 parameters for 1x28x28 inputs and 10 classes.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 1,
        image_size: tuple[int, int] = (28, 28),
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        dropout: float = 0.0,
        hidden: int = 128,
    ) -> None:
        super().__init__()
        h, w = image_size
        if h < 4 or w < 4:
            raise ConfigError(f"small_cnn needs image_size >= 4x4, got {image_size}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        self.normalize = Normalize(in_channels, mean, std)
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.fc = nn.Sequential(
            nn.Linear(64 * (h // 4) * (w // 4), hidden), nn.ReLU(inplace=True), nn.Dropout(dropout)
        )
        self.feature_dim = hidden
        self.head = nn.Linear(hidden, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.fc(self.conv(self.normalize(x)))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


register_model(
    "small_cnn",
    description="Small MNIST CNN of the healing paper (2 conv + 1 hidden FC; 421,642 params)",
    default_input=(1, 28, 28),
)(SmallCNN)
