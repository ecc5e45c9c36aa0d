"""Transformer building blocks shared by the encoder and the predictors.

Attention goes through ``F.scaled_dot_product_attention`` so GPUs get the flash or
memory-efficient kernels. Rotary positions (``rope``: a (cos, sin) pair from
``jepa.models.pos_embed.rope_3d``, [B, N, head_dim] each) rotate queries and keys when given. Variable-length token sets (masked clips) are padded to a common
length and carry a key-padding mask ``[B, N]`` (True = real token); a batch without padding
passes ``None`` so the flash kernel stays eligible.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp
from torch import nn
from torch.utils.checkpoint import checkpoint

from jepa.models.pos_embed import apply_rope

Rope = tuple[torch.Tensor, torch.Tensor]


def key_padding_to_attn_mask(valid: torch.Tensor | None) -> torch.Tensor | None:
    """[B, N] bool (True = attend) -> SDPA boolean mask [B, 1, 1, N], or None if nothing is padded."""
    if valid is None or bool(valid.all()):
        return None
    return valid[:, None, None, :]


class Attention(nn.Module):
    """Multi-head self-attention (optionally with an additive or boolean attention mask)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, rope: Rope | None = None
    ) -> torch.Tensor:
        b, n, c = x.shape
        if n == 1 and attn_mask is None:  # one token attends only to itself: softmax = 1, out = v
            v = F.linear(x, self.qkv.weight[2 * c :], None if self.qkv.bias is None else self.qkv.bias[2 * c :])
            return self.proj(v)
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        if rope is not None:  # queries and keys rotated in one pass
            cos, sin = rope[0][:, None], rope[1][:, None]  # [B, 1, N, d]: same rotation for every head
            q, k = apply_rope(qkv[:2], cos, sin).unbind(0)
            v = qkv[2]
        else:
            q, k, v = qkv.unbind(0)  # [B, heads, N, d]
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), x + mlp(norm(x)), with drop path."""

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, rope: Rope | None = None
    ) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), attn_mask, rope))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class BlockStack(nn.Module):
    """A list of blocks with optional activation (gradient) checkpointing."""

    def __init__(
        self, dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        rates = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist() if depth else []
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio, qkv_bias, r) for r in rates)
        self.grad_checkpointing = False

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        collect: set[int] | None = None,
        rope: Rope | None = None,
        stop_after: int | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the blocks (all, or up to block ``stop_after``); also return the outputs of the
        block indices in ``collect``."""
        outs: list[torch.Tensor] = []
        for i, blk in enumerate(self.blocks):
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(blk, x, attn_mask, rope, use_reentrant=False)
            else:
                x = blk(x, attn_mask, rope)
            if collect is not None and i in collect:
                outs.append(x)
            if stop_after is not None and i >= stop_after:
                break
        return x, outs


def rescale_residual_projections(stack: BlockStack) -> None:
    """Divide each block's residual-branch output weights by sqrt(2 * layer) (I-JEPA/V-JEPA init)."""
    for i, blk in enumerate(stack.blocks):
        blk.attn.proj.weight.data.div_(math.sqrt(2.0 * (i + 1)))
        blk.mlp.fc2.weight.data.div_(math.sqrt(2.0 * (i + 1)))


def init_weights(module: nn.Module) -> None:
    """timm/ViT initialisation: truncated normal(0.02) linears, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
