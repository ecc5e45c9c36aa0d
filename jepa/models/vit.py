"""Video ViT encoder: tubelet patch embedding, 3D positions (sin-cos or RoPE), transformer blocks.

Plain PyTorch (no Lightning). timm-style API::

    enc = VideoViT.from_preset("vit_tiny", patch_size=8, input_size=(8, 64, 64))
    tokens = enc.forward_features(video)            # video [B, 3, T, H, W] -> [B, N, D]
    ctx = enc.forward_features(video, token_ids=ids, token_mask=valid)   # [B, Nc, D]

``N = (T / tubelet) * (H / patch) * (W / patch)``, tokens flattened t-major (time, row,
column). ``token_ids`` [B, Nc] selects visible tokens after the patch embedding (the context
encoder of a JEPA sees only those); ``token_mask`` [B, Nc] marks real entries when the
selection is padded to a common length.

Presets follow timm's widths and depths (tiny .. giant) plus small CPU presets; the
tokeniser is one strided Conv3d (``patch_size`` x ``patch_size`` x ``tubelet_size``) or, with
``conv_stem=True``, a few stride-2 3x3 convolutions followed by a 1x1 temporal projection
("early convolutions", Xiao et al. 2021).

Positions: ``pos_encoding="sincos"`` adds fixed 3D sine-cosine embeddings to the tokens
(V-JEPA); ``"rope"`` rotates queries and keys in every attention layer instead (3D RoPE, as in
V-JEPA 2), so token features depend on relative, not absolute, positions.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from jepa.models.blocks import (
    BlockStack,
    Rope,
    init_weights,
    key_padding_to_attn_mask,
    rescale_residual_projections,
)
from jepa.models.pos_embed import ROPE_LAYOUTS, grid_coords, rope_3d, sincos_3d

POS_ENCODINGS: tuple[str, ...] = ("sincos", "rope")

# name -> (embed_dim, depth, num_heads, mlp_ratio); timm's ViT widths/depths plus CPU sizes.
PRESETS: dict[str, tuple[int, int, int, float]] = {
    "vit_pico": (96, 4, 3, 4.0),
    "vit_nano": (128, 6, 4, 4.0),
    "vit_micro": (192, 6, 3, 4.0),
    "vit_tiny": (192, 12, 3, 4.0),
    "vit_small": (384, 12, 6, 4.0),
    "vit_base": (768, 12, 12, 4.0),
    "vit_large": (1024, 24, 16, 4.0),
    "vit_huge": (1280, 32, 16, 4.0),
    "vit_giant": (1408, 40, 16, 48 / 11),
    # V-JEPA 2's encoders (jepa convert vjepa2, then create_encoder(name, pretrained=file)).
    "vjepa2_vitl": (1024, 24, 16, 4.0),
    "vjepa2_vith": (1280, 32, 16, 4.0),
    "vjepa2_vitg": (1408, 40, 22, 48 / 11),
}
# What a preset sets besides its size: V-JEPA 2's patching, clip and exact rotary positions.
PRESET_DEFAULTS: dict[str, dict[str, Any]] = {
    name: dict(patch_size=16, tubelet_size=2, input_size=(64, 256, 256), pos_encoding="rope", rope_layout="vjepa2")
    for name in ("vjepa2_vitl", "vjepa2_vith", "vjepa2_vitg")
}


class PatchEmbed3D(nn.Module):
    """[B, C, T, H, W] -> [B, N, D] tokens, by a tubelet Conv3d or a convolutional stem."""

    def __init__(
        self, in_chans: int, embed_dim: int, patch_size: int, tubelet_size: int, conv_stem: bool = False
    ) -> None:
        super().__init__()
        self.patch_size, self.tubelet_size = patch_size, tubelet_size
        if not conv_stem:
            self.proj: nn.Module = nn.Conv3d(
                in_chans, embed_dim, (tubelet_size, patch_size, patch_size), (tubelet_size, patch_size, patch_size)
            )
            return
        steps = int(round(math.log2(patch_size)))
        if 2**steps != patch_size:
            raise ValueError(f"conv_stem needs a power-of-two patch_size, got {patch_size}")
        layers: list[nn.Module] = []
        ch = in_chans
        for i in range(steps):
            out = max(embed_dim // 2 ** (steps - i), 16)
            layers += [
                nn.Conv3d(ch, out, (1, 3, 3), (1, 2, 2), (0, 1, 1), bias=False),
                nn.GroupNorm(1, out),
                nn.GELU(),
            ]
            ch = out
        layers.append(nn.Conv3d(ch, embed_dim, (tubelet_size, 1, 1), (tubelet_size, 1, 1)))
        self.proj = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, D, t, h, w] -> [B, N, D]


class VideoViT(nn.Module):
    """Video vision transformer encoder.

    Args:
        embed_dim: token width.
        depth: number of transformer blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / embed_dim.
        patch_size: spatial patch size.
        tubelet_size: frames per token.
        in_chans: input channels.
        input_size: (T, H, W) the model is trained on; position embeddings of other grids are
            interpolated onto this grid.
        conv_stem: convolutional stem instead of one patchify layer.
        drop_path_rate: stochastic depth, linearly increasing over the blocks.
        qkv_bias: bias in the attention projections.
        pos_encoding: "sincos" (added to the tokens) or "rope" (rotary, inside attention).
    """

    def __init__(
        self,
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
        patch_size: int = 16,
        tubelet_size: int = 2,
        in_chans: int = 3,
        input_size: tuple[int, int, int] = (16, 224, 224),
        conv_stem: bool = False,
        drop_path_rate: float = 0.0,
        qkv_bias: bool = True,
        pos_encoding: str = "sincos",
        num_classes: int = 0,
        global_pool: str = "avg",
        rope_layout: str = "half",
    ) -> None:
        super().__init__()
        if pos_encoding not in POS_ENCODINGS:
            raise ValueError(f"unknown pos_encoding {pos_encoding!r}; choose one of {', '.join(POS_ENCODINGS)}")
        self.config: dict[str, Any] = dict(
            embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
            patch_size=patch_size, tubelet_size=tubelet_size, in_chans=in_chans,
            input_size=tuple(input_size), conv_stem=conv_stem, drop_path_rate=drop_path_rate,
            qkv_bias=qkv_bias, pos_encoding=pos_encoding,
        )
        self.meta: dict[str, Any] = {}  # set by jepa.load_encoder: e.g. the clip settings it was trained with
        self.embed_dim = self.num_features = embed_dim
        self.num_heads, self.pos_encoding = num_heads, pos_encoding
        if rope_layout not in ROPE_LAYOUTS:
            raise ValueError(f"unknown rope_layout {rope_layout!r}; choose one of {', '.join(ROPE_LAYOUTS)}")
        self.rope_layout = rope_layout
        if rope_layout != "half":  # plain encoders keep the config they always had
            self.config["rope_layout"] = rope_layout
        self.patch_size, self.tubelet_size = patch_size, tubelet_size
        self.input_size = tuple(input_size)
        self.grid_size = self.token_grid(self.input_size)
        self.patch_embed = PatchEmbed3D(in_chans, embed_dim, patch_size, tubelet_size, conv_stem)
        self.blocks = BlockStack(embed_dim, depth, num_heads, mlp_ratio, qkv_bias, drop_path_rate)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self._pos_cache: dict[tuple[Any, ...], Any] = {}
        self.apply(init_weights)
        rescale_residual_projections(self.blocks)  # depth-scaled residual projections (I-JEPA)
        self.num_classes, self.global_pool = 0, "avg"
        self.head: nn.Module = nn.Identity()
        self.reset_classifier(num_classes, global_pool)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> VideoViT:
        """Build a preset (see ``PRESETS``), overriding any constructor argument."""
        if name not in PRESETS:
            raise ValueError(f"unknown encoder preset {name!r}; choose one of {', '.join(PRESETS)}")
        d, depth, heads, mlp = PRESETS[name]
        kwargs: dict[str, Any] = dict(embed_dim=d, depth=depth, num_heads=heads, mlp_ratio=mlp)
        kwargs.update(PRESET_DEFAULTS.get(name, {}))
        kwargs.update(overrides)
        return cls(**kwargs)

    def token_grid(self, size: tuple[int, int, int]) -> tuple[int, int, int]:
        """(T, H, W) of an input -> (t, h, w) token grid; raises if not divisible."""
        t, h, w = size
        if t % self.tubelet_size or h % self.patch_size or w % self.patch_size:
            raise ValueError(
                f"input size (T={t}, H={h}, W={w}) is not divisible by tubelet_size={self.tubelet_size} "
                f"and patch_size={self.patch_size}"
            )
        return t // self.tubelet_size, h // self.patch_size, w // self.patch_size

    def pos_embed(self, grid: tuple[int, int, int], device: torch.device) -> torch.Tensor:
        """Position embeddings [N, D] for a token grid (cached per grid and device)."""
        key = (grid, str(device))
        if key not in self._pos_cache:
            self._pos_cache[key] = sincos_3d(self.embed_dim, grid, self.grid_size, device)
        return self._pos_cache[key]

    def rope(self, grid: tuple[int, int, int], token_ids: torch.Tensor | None, device: torch.device) -> Rope | None:
        """Rotary tables for the tokens ``token_ids`` [B, M] of a grid (all tokens when None), or
        None when the encoder adds sin-cos embeddings instead."""
        if self.pos_encoding != "rope":
            return None
        key = ("rope", grid, str(device))
        if key not in self._pos_cache:
            # V-JEPA 2 positions are token indices of the grid itself (its models extrapolate);
            # ours map another grid onto the training grid's range.
            coords = grid_coords(grid, grid if self.rope_layout == "vjepa2" else self.grid_size, device)
            self._pos_cache[key] = rope_3d(coords, self.embed_dim // self.num_heads, layout=self.rope_layout)
        cos, sin = self._pos_cache[key]  # [N, d]
        if token_ids is None:
            return cos[None], sin[None]
        return cos[token_ids], sin[token_ids]

    def no_weight_decay(self) -> set[str]:
        """Parameter names excluded from weight decay besides norms and biases (none: positions are fixed)."""
        return set()

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.blocks.grad_checkpointing = enable

    def embed(self, video: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """Patch-embed (and add sin-cos positions): [B, C, T, H, W] -> ([B, N, D], token grid)."""
        if video.ndim != 5:
            raise ValueError(f"expected video [B, C, T, H, W], got shape {tuple(video.shape)}")
        grid = self.token_grid(tuple(video.shape[2:]))
        x = self.patch_embed(video)
        if self.pos_encoding == "rope":
            return x, grid
        return x + self.pos_embed(grid, x.device).to(x.dtype), grid

    def forward_features(
        self,
        video: torch.Tensor,
        token_ids: torch.Tensor | None = None,
        token_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Encode a clip, optionally only the tokens ``token_ids`` [B, Nc] -> [B, N or Nc, D]."""
        x, grid = self.embed(video)
        return self.forward_tokens(gather_tokens(x, token_ids), token_mask, token_ids, grid)

    def forward_tokens(
        self,
        x: torch.Tensor,
        token_mask: torch.Tensor | None = None,
        token_ids: torch.Tensor | None = None,
        grid: tuple[int, int, int] | None = None,
    ) -> torch.Tensor:
        """Run the blocks and final norm on embedded tokens x [B, M, D].

        ``token_mask``: real entries; ``token_ids`` [B, M]: their indices into ``grid`` (from
        ``embed``), which rotary positions need (None: x is the whole grid).
        """
        rope = None
        if self.pos_encoding == "rope":
            if grid is None:
                raise ValueError("a rope encoder needs the token grid (from embed) in forward_tokens")
            rope = self.rope(grid, token_ids, x.device)
        x, _ = self.blocks(x, key_padding_to_attn_mask(token_mask), rope=rope)
        return self.norm(x)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Tokens ``[B, N, D]`` (an encoder, no classifier), or the classifier's logits ``[B, num_classes]``
        once ``reset_classifier(n)`` has added one (timm's ``forward_head(forward_features(x))``)."""
        x = self.forward_features(video)
        return self.forward_head(x) if self.num_classes > 0 else x

    # -- timm-shaped surface ----------------------------------------------------------------
    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new linear classifier on the pooled tokens (``num_classes`` 0: none), timm style."""
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        if global_pool is not None:
            if global_pool not in ("avg", ""):
                raise ValueError(f"global_pool must be 'avg' (mean over tokens) or '' (none), got {global_pool!r}")
            self.global_pool = global_pool
        self.num_classes = int(num_classes)
        if self.num_classes:
            head = nn.Linear(self.embed_dim, self.num_classes)
            nn.init.trunc_normal_(head.weight, std=0.02)
            nn.init.zeros_(head.bias)
            self.head = head.to(self.norm.weight.device)
        else:
            self.head = nn.Identity()
        for key, value, default in (("num_classes", self.num_classes, 0), ("global_pool", self.global_pool, "avg")):
            if value != default:  # plain encoders keep the config (and file format) they always had
                self.config[key] = value
            else:
                self.config.pop(key, None)

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Tokens ``[B, N, D]`` -> the pooled vector ``[B, D]`` (``pre_logits``) or the logits."""
        pooled = x.mean(1) if self.global_pool == "avg" else x
        return pooled if pre_logits else self.head(pooled)

    def forward_intermediates(
        self,
        video: torch.Tensor,
        indices: int | list[int] | tuple[int, ...] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCTHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's ``forward_intermediates`` for video: the outputs of the blocks in ``indices`` (an
        int: the last n; a list: block indices, negative from the end; None: all), each
        ``[B, D, t, h, w]`` (``output_fmt="NCTHW"``) or ``[B, N, D]`` (``"NLC"``), with the final
        norm if ``norm``. Returns ``(final tokens, intermediates)``, or the intermediates only;
        ``stop_early`` (with ``intermediates_only``) skips the blocks after the last one asked."""
        if output_fmt not in ("NCTHW", "NLC"):
            raise ValueError(f"output_fmt must be 'NCTHW' or 'NLC', got {output_fmt!r}")
        wanted = self._block_indices(indices, "forward_intermediates")
        x, grid = self.embed(video)
        stop = max(wanted) if (stop_early and intermediates_only) else None
        final, outs = self.blocks(x, None, collect=wanted, rope=self.rope(grid, None, x.device), stop_after=stop)
        inter = [self.norm(o) if norm else o for o in outs]
        if output_fmt == "NCTHW":
            b, _, d = x.shape
            inter = [o.transpose(1, 2).reshape(b, d, *grid) for o in inter]
        return inter if intermediates_only else (self.norm(final), inter)

    def _block_indices(self, n: int | list[int] | tuple[int, ...] | None, caller: str) -> set[int]:
        """Block indices from a count (the last n) or a list (negative from the end); raises out of range."""
        depth = len(self.blocks.blocks)
        if n is None:
            return set(range(depth))
        if isinstance(n, int):
            if not 1 <= n <= depth:
                raise ValueError(f"{caller}: n={n} blocks asked of a {depth}-block encoder; use 1..{depth}")
            return set(range(depth - n, depth))
        bad = [i for i in n if not -depth <= int(i) < depth]
        if bad or not n:
            raise ValueError(f"{caller}: block indices {bad or list(n)} are out of range for a "
                             f"{depth}-block encoder; use 0..{depth - 1} or -{depth}..-1")
        return {int(i) % depth for i in n}

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        """What a user needs to feed the encoder, timm style: input size ``(C, T, H, W)``, mean/std
        (0-1 scale), frames and frame step of its clips (from the training data, when known)."""
        from data_pipelines.transforms import IMAGENET_MEAN, IMAGENET_STD

        data = dict((self.meta or {}).get("data") or {})
        t, h, w = self.input_size
        frames, crop = int(data.get("num_frames", t)), int(data.get("crop_size", h))
        return {
            "input_size": (self.config["in_chans"], frames, crop, crop if "crop_size" in data else w),
            "num_frames": frames,
            "frame_step": data.get("frame_step"),
            "fps": data.get("fps"),
            "mean": tuple(data.get("mean", IMAGENET_MEAN)),
            "std": tuple(data.get("std", IMAGENET_STD)),
            "crop_pct": data.get("eval_crop_fraction", 0.875),
            "interpolation": "bilinear",
            "patch_size": self.patch_size,
            "tubelet_size": self.tubelet_size,
            "num_classes": self.num_classes,
            "source": (self.meta or {}).get("source"),
        }

    @property
    def default_cfg(self) -> dict[str, Any]:  # timm's older name
        return self.pretrained_cfg

    def get_intermediate_layers(
        self, video: torch.Tensor, n: int | list[int] = 1, norm: bool = True
    ) -> list[torch.Tensor]:
        """Token outputs of the last ``n`` blocks (or of the block indices in ``n``, negative from the
        end), timm style, in block order. Out-of-range counts or indices raise ``ValueError``."""
        wanted = self._block_indices(n, "get_intermediate_layers")
        x, grid = self.embed(video)
        _, outs = self.blocks(x, None, collect=wanted, rope=self.rope(grid, None, x.device))
        return [self.norm(o) if norm else o for o in outs]


def gather_tokens(x: torch.Tensor, ids: torch.Tensor | None) -> torch.Tensor:
    """x [B, N, D], ids [B, M] -> x[b, ids[b]] as [B, M, D] (x itself when ids is None)."""
    if ids is None:
        return x
    return torch.gather(x, 1, ids[..., None].expand(-1, -1, x.shape[-1]))
