"""Prediction loss and VICReg variance / covariance regularisers (DDP-aware).

VICReg (Bardes, Ponce, LeCun 2022), for embeddings Z of n samples and d dimensions:

    v(Z) = 1/d * sum_j max(0, gamma - sqrt(Var(z_j) + eps))        gamma = 1, eps = 1e-4
    C(Z) = 1/(n-1) * sum_i (z_i - mean z)(z_i - mean z)^T
    c(Z) = 1/d * sum_{i != j} C(Z)_{ij}^2

Under DDP the statistics are over the *global* batch: per-rank sums are all-reduced with
``torch.distributed.nn.functional.all_reduce``, whose backward all-reduces the gradients, so
each rank's gradient is exactly its share of the global loss's gradient (after DDP's
averaging). Ranks may hold different numbers of rows (masked token counts differ). The mean
is reduced first and the centred second moments second (two-pass, numerically safe).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F

LossKind = Literal["l1", "l2", "smooth_l1"]


def prediction_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, kind: LossKind = "l1") -> torch.Tensor:
    """Mean per-element distance between pred and target [B, N, D] over the valid tokens [B, N].

    Under DDP the mean is over the valid tokens of the *global* batch (see the module notes).
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
    if not _distributed():
        return total / count.clamp_min(1.0)
    # Ranks hold different numbers of valid tokens: normalise by the global count, times the
    # world size because DDP averages gradients (and sync_dist logging averages values) over
    # ranks. The mean over ranks is then exactly the global token mean.
    world = dist.get_world_size()
    return total * world / _all_reduce_sum_nograd(count).clamp_min(1.0)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce_sum_nograd(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def _all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    if not _distributed():
        return x
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(x, op=dist.ReduceOp.SUM)


def global_moments(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(n, mean [D], centred z [n_local, D]) over all ranks; differentiable."""
    z = z.to(torch.promote_types(z.dtype, torch.float32))  # half/bf16 -> fp32; fp64 stays fp64
    count = _all_reduce_sum(z.new_tensor([float(z.shape[0])]))
    mean = _all_reduce_sum(z.sum(0)) / count
    return count, mean, z - mean


def variance_loss(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """VICReg variance term of z [n, D]: mean hinge of the per-dimension std below gamma."""
    n, _, zc = global_moments(z)
    var = _all_reduce_sum(zc.pow(2).sum(0)) / (n - 1).clamp_min(1.0)
    return F.relu(gamma - torch.sqrt(var + eps)).mean()


def covariance_loss(z: torch.Tensor) -> torch.Tensor:
    """VICReg covariance term of z [n, D]: squared off-diagonal covariance summed, over D."""
    n, _, zc = global_moments(z)
    cov = _all_reduce_sum(zc.T @ zc) / (n - 1).clamp_min(1.0)  # [D, D]
    d = cov.shape[0]
    off = cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()
    return off / d


def vicreg_terms(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """(variance, covariance) of z [n, D], sharing one pass of global moments."""
    n, _, zc = global_moments(z)
    denom = (n - 1).clamp_min(1.0)
    cov = _all_reduce_sum(zc.T @ zc) / denom
    var = torch.diagonal(cov)
    v = F.relu(gamma - torch.sqrt(var + eps)).mean()
    c = (cov.pow(2).sum() - var.pow(2).sum()) / cov.shape[0]
    return v, c


@torch.no_grad()
def effective_rank(z: torch.Tensor, eps: float = 1e-7) -> float:
    """RankMe (Garrido et al. 2023): exp of the entropy of the normalised singular values of z [n, D]."""
    s = torch.linalg.svdvals(z.float())
    p = s / (s.sum() + eps) + eps
    return float(torch.exp(-(p * torch.log(p)).sum()))
