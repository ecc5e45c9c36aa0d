"""SIGReg (LeJEPA, Balestriero & LeCun 2025): sketched isotropic Gaussian regularisation.

Embeddings should be distributed as an isotropic standard Gaussian. By Cramer-Wold that holds
iff every 1-D projection is N(0, 1); SIGReg tests M random unit directions a_m (redrawn each
step) with the Epps-Pulley statistic of the projected samples x_i = <z_i, a_m>::

    phi_N(t) = 1/N sum_i exp(i t x_i)                  (empirical characteristic function)
    EP       = N * integral_R |phi_N(t) - exp(-t^2/2)|^2 w(t) dt,   w(t) = exp(-t^2/2)

The integrand is even in t, so the integral is twice the one over [0, t_max], taken with the
trapezoidal rule on ``knots`` points (LeJEPA: t_max = 3, 17 knots)::

    EP ~= N * sum_k w_k [(mean_i cos(t_k x_i) - exp(-t_k^2/2))^2 + (mean_i sin(t_k x_i))^2]

with w_k = 2 * trapezoid_k * exp(-t_k^2/2). SIGReg is the mean of EP over the M directions
(and over groups: LeWM applies it per time step to world-model latents). The loss is
``weight * SIGReg``.

Distributed: the empirical means of cos and sin are sums over the global batch (all-reduced
with their gradients), N is the global count, and every rank draws the same directions from
(seed, step), so a step under DDP or FSDP is the step one process takes over the whole batch.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from data_pipelines.resumable import mix_seed
from jepa.objectives.base import Regularizer
from jepa.objectives.collectives import all_reduce_sum, global_count


def epps_pulley_quadrature(knots: int = 17, t_max: float = 3.0, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Knots ``t [K]`` on [0, t_max] and weights ``w [K]`` (trapezoid x 2 for the even integrand x
    the Gaussian window exp(-t^2/2))."""
    if knots < 2 or t_max <= 0:
        raise ValueError(f"SIGReg needs knots >= 2 and t_max > 0, got {knots} and {t_max}")
    t = torch.linspace(0.0, t_max, knots, dtype=torch.float64)
    dt = t_max / (knots - 1)
    trap = torch.full((knots,), dt, dtype=torch.float64)
    trap[0] = trap[-1] = dt / 2
    w = 2.0 * trap * torch.exp(-t.square() / 2)
    return t.to(dtype), w.to(dtype)


def random_directions(dim: int, num: int, seed: int, step: int) -> torch.Tensor:
    """``[dim, num]`` unit columns drawn from (seed, step) alone (the same on every rank and device)."""
    g = torch.Generator().manual_seed(mix_seed(seed, step))
    a = torch.randn(dim, num, generator=g, dtype=torch.float64)
    return (a / a.norm(dim=0, keepdim=True)).float()


def epps_pulley(x: torch.Tensor, t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Epps-Pulley statistic of each column of projected samples ``x [..., n, M]`` -> ``[..., M]``,
    with the global count and means under DDP."""
    n = global_count(x).to(x.dtype)
    xt = x.unsqueeze(-1) * t  # [..., n, M, K]
    mean_cos = all_reduce_sum(torch.cos(xt).sum(-3)) / n  # [..., M, K]
    mean_sin = all_reduce_sum(torch.sin(xt).sum(-3)) / n
    err = (mean_cos - torch.exp(-t.square() / 2)).square() + mean_sin.square()
    return n * (err @ w)


def sigreg(z: torch.Tensor, directions: torch.Tensor, knots: int = 17, t_max: float = 3.0) -> torch.Tensor:
    """SIGReg of ``z [..., n, D]`` along ``directions [D, M]``: mean Epps-Pulley statistic."""
    z = z.to(torch.promote_types(z.dtype, torch.float32))
    t, w = epps_pulley_quadrature(knots, t_max, z.dtype)
    x = z @ directions.to(device=z.device, dtype=z.dtype)  # [..., n, M]
    return epps_pulley(x, t.to(z.device), w.to(z.device)).mean()


class SIGReg(Regularizer):
    """``weight * SIGReg(z)``; logs ``sigreg_loss``.

    Args:
        weight: the one weight (LeJEPA's lambda = 0.05 in (1 - lambda) pred + lambda SIGReg is
            about 0.05 here; LeWM uses 0.1 with pred + lambda SIGReg).
        num_projections: random directions per step (LeJEPA and LeWM: 1024).
        knots: quadrature points on [0, t_max] (17).
        t_max: end of the integration interval (3).
        seed: seed of the directions (with the optimizer step).
        expander: MLP expander width (0: none); see ``Regularizer``.
    """

    def __init__(self, weight: float = 0.05, num_projections: int = 1024, knots: int = 17, t_max: float = 3.0,
                 seed: int = 0, expander: int = 0) -> None:
        super().__init__(expander)
        if num_projections < 1:
            raise ValueError(f"SIGReg num_projections must be >= 1, got {num_projections}")
        self.weight, self.num_projections, self.knots, self.t_max, self.seed = (
            float(weight), int(num_projections), int(knots), float(t_max), int(seed))
        epps_pulley_quadrature(self.knots, self.t_max)  # validates
        self.init_args.update(weight=self.weight, num_projections=self.num_projections, knots=self.knots,
                              t_max=self.t_max, seed=self.seed)
        self._cache: tuple[tuple[int, int], torch.Tensor] | None = None

    def directions(self, dim: int, step: int) -> torch.Tensor:
        key = (dim, step)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, random_directions(dim, self.num_projections, self.seed, step))
        return self._cache[1]

    def terms(self, z: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        return {"sigreg_loss": sigreg(z, self.directions(z.shape[-1], step), self.knots, self.t_max)}

    def combine(self, terms: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.weight * terms["sigreg_loss"]
