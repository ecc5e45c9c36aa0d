"""Receding-horizon control: plan, execute the first actions, observe, replan.

A *cost* turns candidate action sequences ``[N, H, A]`` (one environment action per planner
step, held for ``frameskip`` environment steps) into energies ``[N]``:

* ``LatentCost``: the world model. Start and goal are encoded once per replan / episode; all N
  samples roll out in one batch; energy = distance of rolled-out latents to the goal latent.
* ``TrueDynamicsCost``: the environment's own batched dynamics and the distance of the true
  state to the goal state: the "perfect model" check, which tells a planner failure (this fails
  too) from a model failure (this succeeds, the world model does not).

``run_episode`` runs the loop on an environment with a goal and records success (the
environment's own test, ``env.is_success``), steps taken, the state path, frames (for GIFs) and
the wall time of every replan.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from jepa.envs.base import Env
from jepa.planning.energy import Distance, Reduce, latent_energy
from jepa.planning.samplers import Planner


class Cost(Protocol):
    def reset(self, obs: np.ndarray, info: dict[str, Any]) -> None: ...

    def __call__(self, actions: torch.Tensor) -> torch.Tensor: ...


def repeat_actions(actions: torch.Tensor, frameskip: int) -> torch.Tensor:
    """``[N, H, A]`` planner actions -> ``[N, H, frameskip * A]`` model actions (each held k steps)."""
    return actions.repeat(1, 1, frameskip) if frameskip > 1 else actions


class LatentCost:
    """Energy of action samples under a world model (``encode`` / ``rollout`` API; ``encode_goal``
    when the model has one, for goals in the space its predictions land in)."""

    def __init__(
        self, world_model: Any, goal_obs: np.ndarray, frameskip: int = 1, distance: Distance = "l2",
        reduce: Reduce = "final",
    ) -> None:
        self.wm, self.frameskip, self.distance, self.reduce = world_model, frameskip, distance, reduce
        # The goal in the space rollouts land in (the EMA target's, where there is one).
        encode_goal = getattr(world_model, "encode_goal", world_model.encode)
        with torch.no_grad():
            self.goal = encode_goal(goal_obs)[0]  # [P, D], once per episode
        self.z0: torch.Tensor | None = None

    def reset(self, obs: np.ndarray, info: dict[str, Any]) -> None:
        with torch.no_grad():
            self.z0 = self.wm.encode(obs)  # [1, P, D], once per replan

    @torch.no_grad()
    def __call__(self, actions: torch.Tensor) -> torch.Tensor:
        assert self.z0 is not None, "LatentCost.reset(obs) must run before planning"
        n = actions.shape[0]
        zs = self.wm.rollout(self.z0.expand(n, *self.z0.shape[1:]), repeat_actions(actions, self.frameskip))
        return latent_energy(zs, self.goal, self.distance, self.reduce)


class TrueDynamicsCost:
    """Energy of action samples under the environment's true dynamics: ``env.goal_distance`` to the
    goal state after each planner step, from batched ``dynamics`` (Two Rooms) or the simulator
    replaying every sample from the current physics state (``simulate``; Push-T)."""

    def __init__(self, env: Env, goal_state: np.ndarray, frameskip: int = 1, reduce: Reduce = "final") -> None:
        if not (env.has_true_dynamics or env.has_simulator):
            raise ValueError(f"TrueDynamicsCost: {type(env).__name__} has neither batched dynamics nor a simulator")
        self.env, self.goal, self.frameskip, self.reduce = env, np.asarray(goal_state, np.float64), frameskip, reduce
        self.state: np.ndarray | None = None

    def reset(self, obs: np.ndarray, info: dict[str, Any]) -> None:
        self.state = np.asarray(info["state"], np.float64)

    def __call__(self, actions: torch.Tensor) -> torch.Tensor:
        assert self.state is not None
        a = actions.detach().cpu().double().numpy()
        n, h, _ = a.shape
        states = self.env.simulate(np.repeat(a, self.frameskip, axis=1))  # [N, H * k, S], from the current state
        dist = self.env.goal_distance(states[:, self.frameskip - 1 :: self.frameskip], self.goal)  # [N, H]
        e = dist[:, -1] if self.reduce == "final" else dist.sum(1)
        return torch.as_tensor(e, dtype=torch.float32, device=actions.device)


@dataclass
class EpisodeResult:
    success: bool
    steps: int  # environment steps taken (to success, or all of them)
    states: np.ndarray  # [steps + 1, S]
    goal: np.ndarray
    start_room: int
    goal_room: int
    replan_seconds: list[float] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)
    first_success_step: int | None = None  # the first step at which the success test held (any rule)
    setting: dict[str, Any] = field(default_factory=dict)  # the episode's reset options (start, goal, layout)


def run_episode(
    env: Env,
    act: Callable[[np.ndarray, dict[str, Any]], np.ndarray] | None = None,
    planner: Planner | None = None,
    cost: Cost | None = None,
    max_steps: int = 200,
    execute: int = 1,
    frameskip: int = 1,
    keep_frames: bool = False,
    until: str = "success",
    replan_every: int | None = None,
) -> EpisodeResult:
    """Run one episode from the environment's current state toward its goal.

    Either ``planner`` + ``cost`` (MPC: replan, execute the first ``execute`` planner steps, each
    held ``frameskip`` environment steps, warm-start the next plan with the rest of the mean), or
    ``act(obs, info) -> action`` for a policy such as the random baseline. ``replan_every=k``
    (fewer than ``execute * frameskip``) executes only the first k environment steps of the plan
    before replanning, warm-started with the same mean: finer control near the goal, which the
    full-budget rule rewards (the agent must still be there at the end).

    ``until="success"`` (the first-contact rule) stops at the first success (``env.is_success`` of
    the state against the goal) or when the environment terminates; ``until="budget"`` (the
    EB-JEPA / PLDM rule) always runs all ``max_steps`` steps and the episode succeeds when its
    *final* state passes the test. Either way ``first_success_step`` records when it first passed.
    """
    if (act is None) == (planner is None):
        raise ValueError("run_episode needs either a policy `act` or a `planner` with a `cost`")
    if until not in ("success", "budget"):
        raise ValueError(f"run_episode: until must be 'success' or 'budget', got {until!r}")
    if env.goal is None:
        raise ValueError("run_episode: the environment has no goal (reset with options={'goal': ...} or sample_goal)")
    goal = np.asarray(env.goal).copy()
    obs = env.render()
    info = env.info()
    states, frames, replans = [info["state"].copy()], [obs] if keep_frames else [], []
    start_room, goal_room = env.room(info["state"]), env.room(goal)
    warm: torch.Tensor | None = None
    steps, success = 0, env.is_success(info["state"], goal)
    first = 0 if success else None
    done = success and until == "success"
    while steps < max_steps and not done:
        if planner is not None:
            assert cost is not None
            t0 = time.perf_counter()
            cost.reset(obs, info)
            result = planner.plan(cost, warm)
            replans.append(time.perf_counter() - t0)
            n_exec = min(execute, planner.horizon)
            plan = result.actions.detach().cpu().numpy()
            chunk = [plan[i] for i in range(n_exec) for _ in range(frameskip)]
            if replan_every is not None and replan_every < len(chunk):
                chunk = chunk[:replan_every]
                warm = result.mean  # part of the first planner step is still to come
            else:
                rest = result.mean[n_exec:]
                warm = torch.cat([rest, rest[-1:].expand(n_exec, -1)], dim=0) if len(rest) else None
        else:
            chunk = [act(obs, info)]
        for a in chunk:
            obs, _, terminated, _, info = env.step(np.asarray(a, np.float64))
            steps += 1
            states.append(info["state"].copy())
            if keep_frames:
                frames.append(obs)
            success = env.is_success(info["state"], goal)
            if success and first is None:
                first = steps
            done = (success or terminated) if until == "success" else False
            if done or steps >= max_steps:
                break
    return EpisodeResult(success, steps, np.stack(states), goal, start_room, goal_room, replans, frames, first)
