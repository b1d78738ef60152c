"""A small Vision Transformer (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words")."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from obliviate.errors import ConfigError
from obliviate.models.base import Normalize, register_model


class ViT(nn.Module):
    """Conv patch embedding, cls token + learned positions, pre-norm encoder blocks, final
    LayerNorm; the features are the normalised cls token."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 1,
        image_size: tuple[int, int] = (28, 28),
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        patch_size: int = 4,
        dim: int = 96,
        depth: int = 4,
        heads: int = 3,
        mlp_ratio: float = 2.0,
    ) -> None:
        super().__init__()
        h, w = image_size
        if patch_size < 1 or h % patch_size or w % patch_size:
            raise ConfigError(
                f"vit: image_size {tuple(image_size)} is not divisible by patch_size={patch_size}"
            )
        if dim < 1 or heads < 1 or dim % heads:
            raise ConfigError(f"vit: dim={dim} must be a positive multiple of heads={heads}")
        if depth < 1:
            raise ConfigError(f"vit: depth must be >= 1, got {depth}")
        n_patches = (h // patch_size) * (w // patch_size)
        self.normalize = Normalize(in_channels, mean, std)
        self.patch_embed = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n_patches + 1, dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                dim,
                heads,
                dim_feedforward=int(dim * mlp_ratio),
                dropout=0.0,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.feature_dim = dim
        self.head = nn.Linear(dim, num_classes)

    def features(self, x: Tensor) -> Tensor:
        x = self.patch_embed(self.normalize(x)).flatten(2).transpose(1, 2)  # (N, P, D)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.norm(x[:, 0])

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


register_model(
    "vit_tiny",
    description="Small ViT (Dosovitskiy et al. 2021): patch 4, dim 96, depth 4, 3 heads",
    default_input=(1, 28, 28),
)(ViT)
