"""Data-collection policies: the random walk with momentum (also the planning evaluation's random
baseline) and a scripted approach-and-push policy for environments with an object to move.

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

``PushPolicy`` (Push-T) alternates segments: approach a point behind the object for a push
direction drawn at random, push through the object for a few steps, and, with probability
``random_fraction``, a stretch of the random walk; Gaussian action noise throughout. Data from it
shows the contact a random walk rarely makes (the block moves in most episodes), and the random
stretches keep the free motion a planner also needs to model.
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


class Policy:
    """A data-collection policy: ``actor(env, rng)`` makes an online actor; ``rollout`` records an episode."""

    def actor(self, env: Env, rng: np.random.Generator) -> Actor:
        raise NotImplementedError

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


@dataclass(frozen=True)
class RandomWalkPolicy(Policy):
    """Random walk with momentum in action space, capped to the action bounds; see the module doc."""

    momentum: float = 0.9
    noise: float = 0.4  # std of the per-step kick, as a fraction of the largest action
    bounce: bool = True  # reverse the velocity along an axis the agent could not move along

    def actor(self, env: Env, rng: np.random.Generator) -> RandomWalkActor:
        """An online walk: ``act(obs, info) -> action``, called with what each step returned."""
        return RandomWalkActor(self, env, rng)


@dataclass(frozen=True)
class PushPolicy(Policy):
    """Approach-and-push segments mixed with random-walk stretches; see the module doc.

    Needs an environment whose ``object_position(state)`` says where the object is (Push-T: the
    block). Distances are in the environment's units, as fractions of its largest action.
    """

    random_fraction: float = 0.3  # chance that a segment is a random-walk stretch instead of a push
    noise: float = 0.2  # std of the action noise, as a fraction of the largest action
    behind: float = 1.5  # approach point: this many largest actions behind the object
    push_steps: tuple[int, int] = (4, 12)  # steps of one push, drawn uniformly
    walk_steps: tuple[int, int] = (5, 15)  # steps of one random-walk stretch
    approach_steps: int = 12  # give up an approach after this many steps and push from there

    def __post_init__(self) -> None:
        if not 0 <= self.random_fraction <= 1:
            raise ValueError(f"PushPolicy: random_fraction must be in [0, 1], got {self.random_fraction}")

    def actor(self, env: Env, rng: np.random.Generator) -> PushActor:
        return PushActor(self, env, rng)


class PushActor:
    """One approach-and-push episode: call it with each ``(obs, info)`` for the next action."""

    def __init__(self, policy: PushPolicy, env: Env, rng: np.random.Generator) -> None:
        if env.object_position(np.asarray(env.state)) is None:
            raise ValueError(f"the push policy needs an environment with an object to push; "
                             f"{type(env).__name__} has none (use the random walk)")
        self.policy, self.env, self.rng = policy, env, rng
        self.high = np.asarray(env.action_high, dtype=np.float64)
        self.low = np.asarray(env.action_low, dtype=np.float64)
        self.scale = float(np.max(np.abs(self.high)))
        self.walk = RandomWalkPolicy().actor(env, rng)
        self.phase, self.left, self.direction = "", 0, np.zeros(2)
        self._new_segment()

    def _new_segment(self) -> None:
        p, rng = self.policy, self.rng
        if rng.random() < p.random_fraction:
            self.phase, self.left = "walk", int(rng.integers(p.walk_steps[0], p.walk_steps[1] + 1))
            return
        angle = rng.uniform(0, 2 * np.pi)
        self.direction = np.array([np.cos(angle), np.sin(angle)])
        self.phase, self.left = "approach", p.approach_steps

    def _towards(self, agent: np.ndarray, target: np.ndarray) -> np.ndarray:
        a = target - agent + self.policy.noise * self.scale * self.rng.normal(size=2)
        return np.clip(a, self.low, self.high)

    def __call__(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        p = self.policy
        state = np.asarray(info["state"], np.float64)
        agent, obj = state[:2], self.env.object_position(state)
        assert obj is not None
        if self.left <= 0:
            if self.phase == "approach":  # arrived (or gave up): push through the object
                self.phase, self.left = "push", int(self.rng.integers(p.push_steps[0], p.push_steps[1] + 1))
            else:
                self._new_segment()
        self.left -= 1
        if self.phase == "walk":
            return self.walk(obs, info)
        if self.phase == "approach":
            behind = obj - p.behind * self.scale * self.direction
            if np.linalg.norm(behind - agent) < 0.4 * self.scale:
                self.left = 0  # close enough: the push starts next step
            return self._towards(agent, behind)
        return self._towards(agent, agent + self.scale * self.direction)  # push: full steps along the direction
