"""Sampling-based planners over action sequences: CEM and MPPI, batched on the device.

Both keep a Gaussian over action sequences ``[H, A]`` (mean, per-entry std) and refine it for
``iterations`` rounds: draw ``samples`` sequences in one tensor, project them into the action
bounds (box ``[action_low, action_high]`` and, if set, the ball ``||a|| <= max_norm`` per step),
score them all with one call of ``cost(actions [N, H, A]) -> [N]``, and update:

* CEM (Rubinstein; PETS / DINO-WM): mean and std of the ``elites`` lowest-cost sequences.
* MPPI (Williams et al.): mean = cost-weighted average, weights ``softmax(-c / temperature)``
  with the costs rescaled to [0, 1] within each round (so one temperature fits any energy scale);
  std is the weighted std, floored at ``min_std``.

The current mean is always one of the candidates, and ``plan`` returns the lowest-cost sequence
seen in any round (for a deterministic cost this never does worse than the mean). No Python loop
runs over samples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

CostFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class PlanResult:
    actions: torch.Tensor  # [H, A], the best sequence found
    cost: float  # its cost
    mean: torch.Tensor  # [H, A], the final distribution mean (for warm starts)
    history: list[float] = field(default_factory=list)  # best cost after each round


@dataclass
class Planner:
    """Shared sampling machinery; see ``CEM`` and ``MPPI``."""

    horizon: int
    action_dim: int = 2
    samples: int = 256
    iterations: int = 6
    action_low: float | Sequence[float] = -1.0
    action_high: float | Sequence[float] = 1.0
    max_norm: float | None = None
    init_std: float | None = None  # None: half the box width
    min_std: float = 0.05
    seed: int = 0
    device: str | torch.device = "cpu"

    def __post_init__(self) -> None:
        if self.horizon < 1 or self.samples < 2 or self.iterations < 1:
            raise ValueError(
                f"planner needs horizon >= 1, samples >= 2, iterations >= 1; got {self.horizon}, {self.samples}, {self.iterations}"
            )
        self.low = torch.as_tensor(self.action_low, dtype=torch.float32, device=self.device).expand(self.action_dim).clone()
        self.high = torch.as_tensor(self.action_high, dtype=torch.float32, device=self.device).expand(self.action_dim).clone()
        if bool((self.high <= self.low).any()):
            raise ValueError(f"action_high {self.high.tolist()} must exceed action_low {self.low.tolist()}")
        self.generator = torch.Generator(device=self.device).manual_seed(self.seed)

    def project(self, actions: torch.Tensor) -> torch.Tensor:
        """Clamp into the box, then scale each step's action into the norm ball (if ``max_norm``)."""
        a = torch.maximum(torch.minimum(actions, self.high), self.low)
        if self.max_norm is not None:
            norm = a.norm(dim=-1, keepdim=True)
            a = a * torch.clamp(self.max_norm / norm.clamp_min(1e-12), max=1.0)
        return a

    def _initial(self, init_mean: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (self.horizon, self.action_dim)
        if init_mean is None:
            mean = ((self.low + self.high) / 2).expand(shape).clone()
        else:
            if tuple(init_mean.shape) != shape:
                raise ValueError(f"init_mean must be {shape}, got {tuple(init_mean.shape)}")
            mean = init_mean.to(self.device, torch.float32).clone()
        s = self.init_std if self.init_std is not None else None
        std = (torch.full(shape, s, device=self.device) if s is not None else ((self.high - self.low) / 2).expand(shape).clone())
        return mean, std

    def _draw(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        eps = torch.randn((self.samples - 1, *mean.shape), generator=self.generator, device=self.device)
        cand = torch.cat([mean[None], mean[None] + std[None] * eps], dim=0)
        return self.project(cand)

    def _update(self, cand: torch.Tensor, cost: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def plan(self, cost_fn: CostFn, init_mean: torch.Tensor | None = None) -> PlanResult:
        mean, std = self._initial(init_mean)
        best, best_cost, history = mean, float("inf"), []
        for _ in range(self.iterations):
            cand = self._draw(mean, std)
            cost = cost_fn(cand).float()
            if cost.shape != (cand.shape[0],):
                raise ValueError(f"cost function must return [N] = [{cand.shape[0]}], got {tuple(cost.shape)}")
            cost = torch.nan_to_num(cost, nan=float("inf"), posinf=float("inf"))
            i = int(torch.argmin(cost))
            if float(cost[i]) < best_cost:
                best, best_cost = cand[i].clone(), float(cost[i])
            history.append(best_cost)
            mean, std = self._update(cand, cost, mean, std)
            mean = self.project(mean)
        return PlanResult(best, best_cost, mean, history)


@dataclass
class CEM(Planner):
    """Cross-entropy method: refit the Gaussian to the ``elites`` best samples each round."""

    elites: int = 32
    momentum: float = 0.0  # new = momentum * old + (1 - momentum) * elite statistics

    def _update(self, cand: torch.Tensor, cost: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = min(max(self.elites, 2), cand.shape[0])
        idx = torch.topk(cost, k, largest=False).indices
        el = cand[idx]
        new_mean, new_std = el.mean(0), el.std(0).clamp_min(self.min_std)
        m = self.momentum
        return m * mean + (1 - m) * new_mean, m * std + (1 - m) * new_std


@dataclass
class MPPI(Planner):
    """Model-predictive path integral: a softmin-weighted average of all samples each round."""

    temperature: float = 0.1

    def _update(self, cand: torch.Tensor, cost: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        finite = torch.isfinite(cost)
        c = torch.where(finite, cost, cost[finite].max() if bool(finite.any()) else torch.zeros_like(cost))
        c = (c - c.min()) / (c.max() - c.min()).clamp_min(1e-12)
        w = torch.softmax(-c / self.temperature, dim=0)[:, None, None]
        new_mean = (w * cand).sum(0)
        new_std = (w * (cand - new_mean).pow(2)).sum(0).sqrt().clamp_min(self.min_std)
        return new_mean, new_std


PLANNERS: dict[str, type[Planner]] = {"cem": CEM, "mppi": MPPI}


def make_planner(name: str, **kwargs: object) -> Planner:
    if name not in PLANNERS:
        raise ValueError(f"unknown planner {name!r}; expected one of {sorted(PLANNERS)}")
    return PLANNERS[name](**kwargs)  # type: ignore[arg-type]
