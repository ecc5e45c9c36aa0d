"""Planning energies: how far rolled-out latents are from the goal latent.

``latent_energy(zs [N, H, P, D], goal [P, D])`` -> ``[N]``: the L1 or L2 distance of each step's
latent to the goal (over all tokens and channels), taken at the final step (``reduce="final"``)
or summed over the horizon (``reduce="sum"``: prefers sequences that get there early).
"""

from __future__ import annotations

from typing import Literal

import torch

Distance = Literal["l2", "l1"]
Reduce = Literal["final", "sum"]


def latent_energy(zs: torch.Tensor, goal: torch.Tensor, distance: Distance = "l2", reduce: Reduce = "final") -> torch.Tensor:
    if zs.ndim < 3:
        raise ValueError(f"rolled-out latents must be [N, H, ...], got {tuple(zs.shape)}")
    diff = (zs - goal.unsqueeze(0).unsqueeze(0)).flatten(2)  # [N, H, P*D]
    if distance == "l2":
        d = diff.pow(2).sum(-1).sqrt()
    elif distance == "l1":
        d = diff.abs().sum(-1)
    else:
        raise ValueError(f"unknown distance {distance!r}; expected 'l2' or 'l1'")
    if reduce == "final":
        return d[:, -1]
    if reduce == "sum":
        return d.sum(1)
    raise ValueError(f"unknown reduce {reduce!r}; expected 'final' or 'sum'")
