"""Probe heads trained on frozen features.

``LinearHead``: BatchNorm without affine parameters (standardises each feature with batch
statistics in training and running statistics in eval, as in SSL linear evaluation) then a
linear layer, on the pooled vector ``[B, D]``.

``AttentiveHead`` (V-JEPA's attentive probe): one learnable query cross-attends over all frozen
tokens ``[B, N, D]`` (pre-norm multi-head attention, then a residual MLP), and a linear layer
reads the attended vector.

With a single query, attention needs no per-token key or value projections: the score of token
x is ``q_h . (W_k,h x + b_k,h) = x . (W_k,h^T q_h) + const`` (the constant cancels in the
softmax), and the output ``sum_n a_n (W_v,h x_n + b_v,h) = W_v,h (sum_n a_n x_n) + b_v,h``. So
the head computes per-head score vectors and attention-weighted token means, then projects:
O(N D h) work instead of O(N D^2), identical results (``test_probe`` checks it against the
textbook formulation), which makes training on thousands of cached token grids cheap on a CPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class LinearHead(nn.Module):
    def __init__(self, dim: int, out: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(dim, affine=False)
        self.linear = nn.Linear(dim, out)
        nn.init.trunc_normal_(self.linear.weight, std=0.01)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(x))


class AttentiveHead(nn.Module):
    """Cross-attention pooling with one query, then a linear classifier/regressor."""

    def __init__(self, dim: int, out: int, num_heads: int | None = None, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.num_heads = num_heads or max(1, dim // 64)
        if dim % self.num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {self.num_heads}")
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        self.norm_kv = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm_mlp = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.norm_out = nn.LayerNorm(dim)
        self.linear = nn.Linear(dim, out)
        nn.init.trunc_normal_(self.query, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, N, D] -> [B, D]."""
        b, n, d = tokens.shape
        h, dh = self.num_heads, d // self.num_heads
        x = self.norm_kv(tokens)  # [B, N, D]
        w_k, w_v = self.kv.weight[:d].view(h, dh, d), self.kv.weight[d:].view(h, dh, d)
        q = self.q(self.query.view(1, d)).view(h, dh)
        u = torch.einsum("hc,hcd->dh", q, w_k) / math.sqrt(dh)  # per-head score vectors [D, h]
        attn = (x @ u).softmax(1)  # [B, N, h]
        mixed = attn.transpose(1, 2) @ x  # [B, h, D]: attention-weighted token means
        heads = torch.einsum("bhd,hcd->bhc", mixed, w_v) + self.kv.bias[d:].view(h, dh)
        x = self.query.view(1, d) + self.proj(heads.reshape(b, d))
        x = x + self.mlp(self.norm_mlp(x))
        return self.norm_out(x)

    def pool_reference(self, tokens: torch.Tensor) -> torch.Tensor:
        """The same pooling written the textbook way (keys and values for every token)."""
        b, n, d = tokens.shape
        h = self.num_heads
        kv = self.kv(self.norm_kv(tokens)).view(b, n, 2, h, d // h).permute(2, 0, 3, 1, 4)
        q = self.q(self.query).view(1, h, 1, d // h).expand(b, -1, -1, -1)
        x = F.scaled_dot_product_attention(q, kv[0], kv[1])  # [B, h, 1, d/h]
        x = self.query.view(1, d) + self.proj(x.transpose(1, 2).reshape(b, d))
        x = x + self.mlp(self.norm_mlp(x))
        return self.norm_out(x)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.linear(self.pool(tokens))
