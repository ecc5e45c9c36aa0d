"""Prediction cost between predicted and target latents, averaged over the global batch's valid tokens."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from jepa.objectives.collectives import all_reduce_sum_nograd, distributed, world_size

LossKind = Literal["l1", "l2", "smooth_l1"]


def prediction_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, kind: LossKind = "l1") -> torch.Tensor:
    """Mean per-element distance between pred and target ``[B, N, D]`` over the valid tokens ``[B, N]``.

    Under DDP the mean is over the valid tokens of the *global* batch: ranks hold different
    numbers of valid tokens, so each rank's sum is divided by the global count and multiplied by
    the world size (DDP averages gradients, and ``sync_dist`` logging averages values, over
    ranks); the mean over ranks is then exactly the global token mean.
    """
    if kind == "l1":
        err = (pred - target).abs()
    elif kind == "l2":
        err = (pred - target).pow(2)
    elif kind == "smooth_l1":
        err = F.smooth_l1_loss(pred, target, reduction="none")
    else:
        raise ValueError(f"unknown prediction loss {kind!r}; choose l1, l2 or smooth_l1")
    err = err.mean(-1)  # [B, N]
    if mask is None:
        return err.mean()  # every rank holds B x N: the mean of rank means is the global mean
    m = mask.to(err.dtype)
    total = (err * m).sum()
    count = m.sum().detach()
    if not distributed():
        return total / count.clamp_min(1.0)
    return total * world_size() / all_reduce_sum_nograd(count).clamp_min(1.0)
