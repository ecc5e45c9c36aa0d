"""Collapse monitors: statistics of embeddings logged during training (no gradient)."""

from __future__ import annotations

import torch


@torch.no_grad()
def effective_rank(z: torch.Tensor, eps: float = 1e-7) -> float:
    """RankMe (Garrido et al. 2023): exp of the entropy of the normalised singular values of z [n, D]."""
    s = torch.linalg.svdvals(z.float())
    p = s / (s.sum() + eps) + eps
    return float(torch.exp(-(p * torch.log(p)).sum()))


@torch.no_grad()
def collapse_stats(tokens: torch.Tensor, max_rows: int = 2048) -> dict[str, torch.Tensor | float]:
    """Monitors of embeddings ``[B, N, D]`` (or ``[n, D]``): mean per-dimension std over all
    tokens, RankMe of up to ``max_rows`` evenly strided tokens, and (for ``[B, N, D]``) the mean
    per-dimension std of the per-sample means."""
    flat = tokens.reshape(-1, tokens.shape[-1]).float()
    if flat.shape[0] > max_rows:  # an even stride: no random draw
        flat = flat[:: -(-flat.shape[0] // max_rows)]
    out: dict[str, torch.Tensor | float] = {"std": flat.std(0).mean(), "rankme": effective_rank(flat)}
    if tokens.ndim == 3:
        means = tokens.float().mean(1)
        out["clip_std"] = means.std(0).mean() if means.shape[0] > 1 else 0.0
    return out
