"""Masked-latent predictor: a narrow ViT that fills in target tokens from context tokens.

Input: context tokens from the encoder ``[B, Nc, D]`` with their grid positions ``[B, Nc]``,
and the target positions ``[B, Nt]``. The context is projected to the predictor width and
given its position embedding; each target position becomes a learnable mask token plus that
position's embedding. Context and mask tokens attend to each other jointly; the outputs at
the mask tokens are normed and projected back to the encoder width -> ``[B, Nt, D]``.
Padded entries (``*_mask`` False) are excluded as attention keys. With
``pos_encoding="rope"`` nothing is added: queries and keys are rotated by each token's grid
coordinates inside attention (V-JEPA 2), so the mask tokens differ only through their positions.

Width/depth: V-JEPA uses 12 blocks of width 384 for ViT-L/H; ``default_predictor_size``
scales that down for smaller encoders.
"""

from __future__ import annotations

import torch
from torch import nn

from jepa.models.blocks import (
    BlockStack,
    init_weights,
    key_padding_to_attn_mask,
    rescale_residual_projections,
)
from jepa.models.pos_embed import ROPE_LAYOUTS, grid_coords, rope_3d, sincos_3d
from jepa.models.vit import POS_ENCODINGS, gather_tokens


def default_predictor_size(embed_dim: int, depth: int) -> tuple[int, int, int]:
    """(width, depth, heads) for an encoder: half its width up to 384, half its depth up to 12,
    heads of width 32 (ViT-L/H -> 384 x 12 blocks x 12 heads, V-JEPA's predictor)."""
    width = min(384, max(64, embed_dim // 2))
    heads = max(1, width // 32)  # head width 32, as V-JEPA's 384-wide, 12-head predictor
    while width % heads:
        heads -= 1
    return width, min(12, max(2, depth // 2)), heads


class MaskedPredictor(nn.Module):
    """Predict target-token embeddings from context tokens.

    Args:
        embed_dim: encoder width (input and output).
        grid_size: training token grid (t, h, w) of the encoder.
        predictor_embed_dim: predictor width.
        depth: predictor blocks.
        num_heads: predictor attention heads.
        mlp_ratio: MLP width ratio.
        pos_encoding: "sincos" (added) or "rope" (rotary, inside attention).
        rope_layout: "half" (ours: coordinates on the training grid's scale) or "vjepa2"
            (V-JEPA 2's exact rotation on integer token coordinates, needed for its predictor's
            weights and for the ``transformers`` export; see ``jepa.models.pos_embed.rope_3d``).
    """

    def __init__(
        self,
        embed_dim: int,
        grid_size: tuple[int, int, int],
        predictor_embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        pos_encoding: str = "sincos",
        rope_layout: str = "half",
    ) -> None:
        super().__init__()
        if pos_encoding not in POS_ENCODINGS:
            raise ValueError(f"unknown pos_encoding {pos_encoding!r}; choose one of {', '.join(POS_ENCODINGS)}")
        if rope_layout not in ROPE_LAYOUTS:
            raise ValueError(f"unknown rope_layout {rope_layout!r}; choose one of {', '.join(ROPE_LAYOUTS)}")
        self.rope_layout = rope_layout
        # the architecture, as VideoViT.config (init_from compares it; the transformers export writes it)
        self.config = dict(embed_dim=embed_dim, predictor_embed_dim=predictor_embed_dim, depth=depth,
                           num_heads=num_heads, mlp_ratio=mlp_ratio, pos_encoding=pos_encoding,
                           rope_layout=rope_layout, qkv_bias=True)
        self.grid_size = tuple(grid_size)
        self.num_heads, self.pos_encoding = num_heads, pos_encoding
        self.embed_dim, self.predictor_embed_dim = embed_dim, predictor_embed_dim
        self.embed = nn.Linear(embed_dim, predictor_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, predictor_embed_dim))
        self.blocks = BlockStack(predictor_embed_dim, depth, num_heads, mlp_ratio)
        self.norm = nn.LayerNorm(predictor_embed_dim, eps=1e-6)
        self.proj = nn.Linear(predictor_embed_dim, embed_dim)
        self._pos_cache: dict[tuple[object, ...], object] = {}
        self.apply(init_weights)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        rescale_residual_projections(self.blocks)  # depth-scaled residual projections (I-JEPA)

    def no_weight_decay(self) -> set[str]:
        return {"mask_token"}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.blocks.grad_checkpointing = enable

    def pos_embed(self, grid: tuple[int, int, int], device: torch.device) -> torch.Tensor:
        key = (tuple(grid), str(device))
        if key not in self._pos_cache:
            self._pos_cache[key] = sincos_3d(self.predictor_embed_dim, tuple(grid), self.grid_size, device)
        return self._pos_cache[key]  # type: ignore[return-value]

    def rope_tables(self, grid: tuple[int, int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = ("rope", tuple(grid), str(device))
        if key not in self._pos_cache:
            exact = self.rope_layout == "vjepa2"  # integer coordinates, as V-JEPA 2 positions tokens
            coords = grid_coords(tuple(grid), tuple(grid) if exact else self.grid_size, device)
            self._pos_cache[key] = rope_3d(coords, self.predictor_embed_dim // self.num_heads, layout=self.rope_layout)
        return self._pos_cache[key]  # type: ignore[return-value]

    def forward(
        self,
        context: torch.Tensor,
        context_ids: torch.Tensor,
        target_ids: torch.Tensor,
        grid: tuple[int, int, int],
        context_mask: torch.Tensor | None = None,
        target_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """context [B, Nc, D], ids [B, Nc] / [B, Nt] into the flattened grid -> predictions [B, Nt, D]."""
        b, nc, _ = context.shape
        nt = target_ids.shape[1]
        ctx = self.embed(context)
        tgt = self.mask_token.to(context.dtype).expand(b, nt, -1)
        rope = None
        if self.pos_encoding == "rope":
            cos, sin = self.rope_tables(grid, context.device)  # [N, d]
            ids = torch.cat([context_ids, target_ids], dim=1)
            rope = (cos[ids], sin[ids])
        else:
            pos = self.pos_embed(grid, context.device).to(context.dtype)[None].expand(b, -1, -1)  # [B, N, Dp]
            ctx = ctx + gather_tokens(pos, context_ids)
            tgt = tgt + gather_tokens(pos, target_ids)
        x = torch.cat([ctx, tgt], dim=1)  # [B, Nc + Nt, Dp]
        valid = None
        if context_mask is not None or target_mask is not None:
            cm = context_mask if context_mask is not None else context_ids.new_ones(b, nc, dtype=torch.bool)
            tm = target_mask if target_mask is not None else target_ids.new_ones(b, nt, dtype=torch.bool)
            valid = torch.cat([cm, tm], dim=1)
        x, _ = self.blocks(x, key_padding_to_attn_mask(valid), rope=rope)
        return self.proj(self.norm(x[:, nc:]))
