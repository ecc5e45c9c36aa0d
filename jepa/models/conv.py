"""Small convolutional frame encoder for tiny images (world models on 64x64 observations).

``ConvEncoder``: a stack of stride-2 3x3 convolutions (GroupNorm, GELU; the first one 5x5), then
either one latent vector per frame (``latent_grid=None``: flatten and project, P = 1) or a
``latent_grid`` of tokens (a 1x1 convolution to ``latent_dim`` channels on the final feature map,
P = h * w). Input ``[B, 3, H, W]`` normalised; output ``[B, P, latent_dim]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ConvEncoder(nn.Module):
    def __init__(
        self,
        image_size: int = 64,
        latent_dim: int = 64,
        widths: Sequence[int] = (32, 64, 128),
        latent_grid: bool = False,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for i, w in enumerate(widths):
            k = 5 if i == 0 else 3
            layers += [nn.Conv2d(c, w, k, stride=2, padding=k // 2), nn.GroupNorm(min(8, w), w), nn.GELU()]
            c = w
        self.trunk = nn.Sequential(*layers)
        side = image_size
        for _ in widths:
            side = (side + 1) // 2
        self.image_size, self.latent_dim, self.latent_grid = image_size, latent_dim, latent_grid
        self.grid = (side, side) if latent_grid else (1, 1)
        if latent_grid:
            self.head: nn.Module = nn.Conv2d(c, latent_dim, 1)
        else:
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * side * side, latent_dim))

    @property
    def tokens_per_frame(self) -> int:
        return self.grid[0] * self.grid[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            raise ValueError(f"ConvEncoder expects frames [B, C, {self.image_size}, {self.image_size}], got {tuple(x.shape)}")
        y = self.head(self.trunk(x))
        if self.latent_grid:
            return y.flatten(2).transpose(1, 2)  # [B, h*w, D]
        return y[:, None, :]  # [B, 1, D]
