"""The random walk with momentum: the data-collection policy and the planning evaluation's random baseline.

``v_t = momentum * v_{t-1} + noise * scale * eps_t`` (``eps ~ N(0, I)``, ``scale`` the largest
action bound), capped to the environment's action box and, if it has one, its action-norm cap;
the action is ``a_t = v_t``. High momentum gives long, smooth sweeps that cross the arena (and its
door); noise sets how often the heading changes. With ``bounce`` (default) the velocity reverses
along an axis the agent was blocked on (the environment reports ``info["blocked"]``; otherwise an
axis on which the state's leading coordinates moved less than half the action), so episodes do
not spend their steps pressed against a wall. Any action dimension works.

    policy = RandomWalkPolicy()
    frames, actions, states = policy.rollout(env, 100, np.random.default_rng(0))  # offline
    act = policy.actor(env, np.random.default_rng(0))                             # online
    obs, info = env.reset(seed=0)
    obs, _, _, _, info = env.step(act(obs, info))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from jepa.envs.base import Env, clip_actions

Actor = Callable[[np.ndarray, dict[str, Any]], np.ndarray]


class RandomWalkActor:
    """One random walk through an environment: call it with each ``(obs, info)`` to get the next action.

    The first velocity is drawn on construction; every call first bounces off whatever blocked
    the previous action (read from ``info``, the one that action produced), then draws the kick.
    """

    def __init__(self, policy: RandomWalkPolicy, env: Env, rng: np.random.Generator) -> None:
        self.policy, self.rng = policy, rng
        self.high = np.asarray(env.action_high, dtype=np.float64)
        self.low = np.asarray(env.action_low, dtype=np.float64)
        self.max_norm = env.max_action_norm
        self.scale = float(np.max(np.abs(self.high)))
        self.v = rng.normal(0.0, self.scale / 2, size=self.high.shape)
        self._before: np.ndarray | None = None  # the state the last action was taken from

    def _bounce(self, info: dict[str, Any]) -> None:
        v, before = self.v, self._before
        assert before is not None
        if "blocked" in info:  # the environment says which axes were stopped
            stuck = np.asarray(info["blocked"], bool)
        else:  # the agent's position leads the state: did it move about as far as asked?
            moved = np.asarray(info["state"], np.float64)[: len(v)] - before[: len(v)]
            stuck = (np.abs(v) > 0.1 * self.scale) & (np.abs(moved) < 0.5 * np.abs(v))
        self.v = np.where(stuck, -v, v)

    def __call__(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        p = self.policy
        if self._before is not None and p.bounce:
            self._bounce(info)
        v = p.momentum * self.v + p.noise * self.scale * self.rng.normal(size=self.high.shape)
        v = np.clip(v, self.low, self.high)
        if self.max_norm is not None:
            v = clip_actions(v, self.max_norm)
        self.v = v
        self._before = np.asarray(info["state"], np.float64)
        return v.copy()


@dataclass(frozen=True)
class RandomWalkPolicy:
    """Random walk with momentum in action space, capped to the action bounds; see the module doc."""

    momentum: float = 0.9
    noise: float = 0.4  # std of the per-step kick, as a fraction of the largest action
    bounce: bool = True  # reverse the velocity along an axis the agent could not move along

    def actor(self, env: Env, rng: np.random.Generator) -> RandomWalkActor:
        """An online walk: ``act(obs, info) -> action``, called with what each step returned."""
        return RandomWalkActor(self, env, rng)

    def rollout(
        self, env: Env, steps: int, rng: np.random.Generator, reset: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frames ``[steps+1, H, W, 3]``, actions ``[steps, A]`` and states ``[steps+1, S]``.

        ``reset=True`` starts a fresh episode seeded from ``rng``; ``reset=False`` continues from
        the environment's current state.
        """
        if reset:
            obs, info = env.reset(seed=int(rng.integers(2**31)))
        else:
            obs, info = env.render(), env.info()
        act = self.actor(env, rng)
        frames, actions, states = [obs], [], [np.asarray(info["state"], np.float32)]
        for _ in range(steps):
            a = act(obs, info)
            obs, _, _, _, info = env.step(a)
            frames.append(obs)
            actions.append(a.astype(np.float32))
            states.append(np.asarray(info["state"], np.float32))
        return np.stack(frames), np.stack(actions), np.stack(states)
