"""Any timm image model as a frozen frame encoder for world models (``encoder: timm:<name>``).

DINO-WM plans on frozen DINOv2 patch features; this lets a world model use any ``timm`` image
model the same way: frames are resized to the model's own input size and normalised with its own
mean and std (from its ``pretrained_cfg``), and its patch tokens are the latents:

- transformers (``forward_features`` -> ``[B, prefix + h*w, D]``): the class / register tokens
  (``num_prefix_tokens``) are dropped, the ``h x w`` patch tokens kept;
- convolutional nets (``forward_features`` -> ``[B, C, h, w]``): each cell of the last feature
  map is a token.

The token grid and width are read off one forward pass at construction. Offline (tests, CI) the
weights are random (``pretrained: false``); a user with network access passes
``encoder_pretrained: true`` and timm downloads them. Once a world model is trained, its
checkpoint holds the encoder's weights, so loading it never downloads anything.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

PREFIX = "timm:"


class TimmFrames(nn.Module):
    """Frames ``[B, 3, H, W]`` normalised with ``mean`` / ``std`` -> patch tokens ``[B, h*w, D]``.

    Args:
        name: a timm model name (``timm.list_models()``), e.g. ``vit_small_patch14_dinov2``.
        pretrained: let timm load its pretrained weights (needs network access or its cache).
        model_kwargs: more ``timm.create_model`` arguments (e.g. ``{"img_size": 112}``).
    """

    def __init__(self, name: str, pretrained: bool = False, model_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        import timm
        from timm.data import resolve_model_data_config

        if not timm.is_model(name):
            close = timm.list_models(f"*{name.split('_')[0]}*")[:5]
            raise ValueError(f"model.init_args.encoder {PREFIX}{name}: timm has no model {name!r}"
                             + (f"; similar: {', '.join(close)}" if close else "; see timm.list_models()"))
        self.name = name
        self.model = timm.create_model(name, pretrained=pretrained, num_classes=0, **(model_kwargs or {}))
        cfg = resolve_model_data_config(self.model)
        _, h, w = cfg["input_size"]
        self.input_hw = (int(h), int(w))
        self.mean, self.std = tuple(float(v) for v in cfg["mean"]), tuple(float(v) for v in cfg["std"])
        self.num_prefix_tokens = int(getattr(self.model, "num_prefix_tokens", 0) or 0)
        was = self.model.training
        self.model.eval()  # one probing pass; batch-norm statistics stay as they are
        with torch.no_grad():
            feats = self.model.forward_features(torch.zeros(1, 3, *self.input_hw))
        self.model.train(was)
        self.grid, self.latent_dim = self._layout(feats)

    def _layout(self, feats: torch.Tensor) -> tuple[tuple[int, int], int]:
        """(token grid, width) of ``forward_features``' output."""
        if feats.ndim == 4:  # [B, C, h, w]
            return (int(feats.shape[2]), int(feats.shape[3])), int(feats.shape[1])
        if feats.ndim != 3:
            raise ValueError(f"{PREFIX}{self.name}: forward_features gave shape {tuple(feats.shape)}; "
                             "expected tokens [B, N, D] or a feature map [B, C, h, w]")
        n = int(feats.shape[1]) - self.num_prefix_tokens
        patch = getattr(getattr(self.model, "patch_embed", None), "grid_size", None)
        if patch is not None and int(patch[0]) * int(patch[1]) == n:
            return (int(patch[0]), int(patch[1])), int(feats.shape[2])
        side = int(round(n**0.5))
        if side * side != n:
            raise ValueError(f"{PREFIX}{self.name}: its {n} patch tokens do not form a grid; choose a ViT or CNN model")
        return (side, side), int(feats.shape[2])

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Images already at ``input_hw`` and normalised -> ``[B, N, D]``."""
        feats = self.model.forward_features(x)
        if feats.ndim == 4:  # [B, C, h, w]
            return feats.flatten(2).transpose(1, 2)
        return feats[:, self.num_prefix_tokens:]

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if tuple(frames.shape[-2:]) != self.input_hw:
            frames = F.interpolate(frames, size=self.input_hw, mode="bilinear", align_corners=False, antialias=True)
        return self.tokens(frames)
