"""VICReg variance and covariance terms (Bardes, Ponce, LeCun 2022), exact over the global batch.

For embeddings Z of n samples and d dimensions::

    v(Z) = 1/d * sum_j max(0, gamma - sqrt(Var(z_j) + eps))        gamma = 1, eps = 1e-4
    C(Z) = 1/(n-1) * sum_i (z_i - mean z)(z_i - mean z)^T
    c(Z) = 1/d * sum_{i != j} C(Z)_{ij}^2

Under DDP the moments are over the global batch (``jepa.objectives.collectives``); ranks may
hold different numbers of rows. The invariance term of VICReg is the method's prediction loss.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from jepa.objectives.base import Regularizer
from jepa.objectives.collectives import all_reduce_sum, global_moments


def vicreg_terms(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """(variance, covariance) of ``z [..., n, D]``, sharing one pass of global moments; each is
    averaged over the leading group dimensions."""
    n, _, zc = global_moments(z)
    cov = all_reduce_sum(zc.transpose(-1, -2) @ zc) / (n - 1).clamp_min(1.0)  # [..., D, D]
    var = torch.diagonal(cov, dim1=-2, dim2=-1)
    v = F.relu(gamma - torch.sqrt(var + eps)).mean(-1)
    c = (cov.pow(2).sum((-2, -1)) - var.pow(2).sum(-1)) / cov.shape[-1]
    return v.mean(), c.mean()


def variance_loss(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """VICReg variance term of ``z [..., n, D]`` alone (no covariance matrix)."""
    n, _, zc = global_moments(z)
    var = all_reduce_sum(zc.pow(2).sum(-2)) / (n - 1).clamp_min(1.0)
    return F.relu(gamma - torch.sqrt(var + eps)).mean()


def covariance_loss(z: torch.Tensor) -> torch.Tensor:
    """VICReg covariance term of ``z [..., n, D]``."""
    return vicreg_terms(z)[1]


class VICReg(Regularizer):
    """``var_weight * v(Z) + cov_weight * c(Z)``; logs ``var_loss`` and ``cov_loss``.

    Args:
        var_weight: weight of the variance hinge.
        cov_weight: weight of the covariance term.
        gamma: target standard deviation of each dimension.
        eps: added to the variance under the square root.
        expander: MLP expander width (0: none); see ``Regularizer``.
    """

    def __init__(self, var_weight: float = 1.0, cov_weight: float = 0.04, gamma: float = 1.0, eps: float = 1e-4,
                 expander: int = 0) -> None:
        super().__init__(expander)
        self.var_weight, self.cov_weight, self.gamma, self.eps = float(var_weight), float(cov_weight), float(gamma), float(eps)
        self.init_args.update(var_weight=self.var_weight, cov_weight=self.cov_weight, gamma=self.gamma, eps=self.eps)

    def terms(self, z: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        v, c = vicreg_terms(z, self.gamma, self.eps)
        return {"var_loss": v, "cov_loss": c}

    def combine(self, terms: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.var_weight * terms["var_loss"] + self.cov_weight * terms["cov_loss"]
