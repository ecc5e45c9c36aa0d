"""Sums over the global batch that keep gradients exact under DDP and FSDP.

A regulariser whose statistics cover the *global* batch computes per-rank sums and adds them
over ranks with ``torch.distributed.nn.functional.all_reduce``, whose backward all-reduces the
gradient as well. Every rank then computes the same loss value L from the same global sums S;
rank r's backward sends ``W * dL/dS`` into its own share of S, and DDP's gradient averaging
(divide by W) leaves exactly ``dL/dtheta`` of the global loss: the step a single process would
take over the whole batch. With one process these are plain identities.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def distributed() -> bool:
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if distributed() else 1


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, differentiable (the backward all-reduces the gradient)."""
    if not distributed():
        return x
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(x, op=dist.ReduceOp.SUM)


def all_reduce_sum_nograd(x: torch.Tensor) -> torch.Tensor:
    """Sum over ranks of a value that needs no gradient (a count)."""
    if not distributed():
        return x
    x = x.clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def global_count(z: torch.Tensor) -> torch.Tensor:
    """Number of rows of ``z [..., n, D]`` over all ranks, as a float tensor (no gradient)."""
    return all_reduce_sum_nograd(z.new_tensor(float(z.shape[-2]), dtype=torch.float64 if z.dtype == torch.float64 else torch.float32))


def global_moments(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(n, mean ``[..., D]``, centred z ``[..., n_local, D]``) of ``z [..., n, D]`` over all ranks.

    Half and bfloat16 inputs are promoted to float32 (float64 stays float64); the mean is
    reduced first and the centred moments are formed from it (two-pass, numerically safe).
    """
    z = z.to(torch.promote_types(z.dtype, torch.float32))
    n = global_count(z).to(z.dtype)
    mean = all_reduce_sum(z.sum(-2)) / n
    return n, mean, z - mean.unsqueeze(-2)
