"""Push-T (``gym-pusht``) behind the same interface as :class:`jepa.envs.TwoRooms`.

Needs the optional extra: ``pip install 'jepa[envs]'`` (gym-pusht, pymunk, pygame). The physics
and drawing are gym-pusht's own (a kinematic disc pushing a T-shaped block on a 512 x 512 table,
PD-controlled toward a target point); this wrapper adds what world-model training and planning
need:

* **Relative actions.** An action ``(dx, dy)`` in ``[-max_action, max_action]^2`` moves the PD
  target to the agent's position plus ``(dx, dy)`` (clamped to the table), so actions mean the
  same thing everywhere on the table (DINO-WM uses relative actions too). At steady state the
  agent covers about 0.4 of the displacement per step.
* **State** ``[agent_x, agent_y, block_x, block_y, block_angle]`` (angle wrapped to
  ``[0, 2 pi)``), reported in ``info["state"]`` and accepted by ``reset(options={"state": ...})``.
* **Starts near the block** (``start_radius``): the agent starts within reach of the T, so a
  random walk pushes it often and collected data shows contact.
* **Goals** are states, drawn from the evaluation seed by ``sample_goal``: a random walk of
  ``goal_steps`` steps from the current state that moves the block and does not already satisfy
  the success test (so no episode is solved at step 0). ``render_goal`` draws it.
* **Success** follows DINO-WM's Push-T criterion: the distance between the agent + block
  positions of state and goal (a 4-vector) is below ``position_tolerance`` (20 table units) and
  the block's angle differs by less than ``angle_tolerance`` (pi / 9), the angle difference taken
  on the circle. See :func:`pusht_success`.

gym-pusht always draws its fixed green target T; it is part of the scene and the same in every
frame, so it carries no information about our goals (which are images of goal states).

``PushT`` implements :class:`jepa.envs.base.Env`; the registry (``jepa.envs.registry``) names it
``pusht`` lazily, so gym-pusht is imported only when a ``PushT`` is made.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np

from jepa.envs.base import Env
from jepa.envs.policies import RandomWalkPolicy

TABLE = 512.0


@dataclass(frozen=True)
class PushTConfig:
    obs_size: int = 64
    max_action: float = 40.0  # largest PD-target displacement per step, table units
    start_radius: tuple[float, float] = (60.0, 140.0)  # agent's start distance from the block
    position_tolerance: float = 20.0  # DINO-WM: ||(agent, block) xy - goal|| < 20
    angle_tolerance: float = math.pi / 9  # DINO-WM: block angle within 20 degrees
    goal_steps: int = 25  # random-walk steps from the start to an evaluation goal
    min_block_motion: float = 10.0  # a goal's block must be this far (units, or 0.1 rad) from the start's
    max_steps: int = 200

    def __post_init__(self) -> None:
        if self.obs_size < 8:
            raise ValueError(f"PushTConfig: obs_size must be >= 8, got {self.obs_size}")
        if self.max_action <= 0:
            raise ValueError(f"PushTConfig: max_action must be > 0, got {self.max_action}")
        lo, hi = self.start_radius
        if not 0 <= lo <= hi:
            raise ValueError(f"PushTConfig: start_radius must be (lo, hi) with 0 <= lo <= hi, got {self.start_radius}")


def angle_difference(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """Absolute difference of two angles on the circle, in ``[0, pi]``."""
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)) % (2 * math.pi)
    return np.minimum(d, 2 * math.pi - d)


def pusht_success(state: np.ndarray, goal: np.ndarray, position_tolerance: float = 20.0,
                  angle_tolerance: float = math.pi / 9) -> np.ndarray:
    """DINO-WM's Push-T success test, batched over leading axes of ``[..., 5]`` states."""
    state, goal = np.asarray(state, np.float64), np.asarray(goal, np.float64)
    pos = np.linalg.norm(state[..., :4] - goal[..., :4], axis=-1)
    return (pos < position_tolerance) & (angle_difference(state[..., 4], goal[..., 4]) < angle_tolerance)


def _import_env() -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from gym_pusht.envs.pusht import PushTEnv
    except ImportError as e:
        raise ImportError(
            "the pusht environment needs gym-pusht: pip install 'jepa[envs]' (or pip install gym-pusht)"
        ) from e
    return PushTEnv


@dataclass
class PushT(Env):
    """Gymnasium-style Push-T with relative actions, state goals and DINO-WM success; see the module doc."""

    name: ClassVar[str] = "pusht"
    state_names: ClassVar[tuple[str, ...]] = ("agent_x", "agent_y", "block_x", "block_y", "block_angle")
    has_true_dynamics: ClassVar[bool] = False  # pymunk steps one state at a time
    has_simulator: ClassVar[bool] = True  # ``simulate``: sequences replayed from a physics snapshot
    path_subject: ClassVar[str] = "block"

    config: PushTConfig = field(default_factory=PushTConfig)

    def __post_init__(self) -> None:
        cls = _import_env()
        c = self.config
        self.env = cls(obs_type="state", render_mode="rgb_array", observation_width=c.obs_size,
                       observation_height=c.obs_size)
        self.env.reset(seed=0)
        self.rng = np.random.default_rng()
        self.goal: np.ndarray | None = None
        self.steps = 0

    @classmethod
    def make(cls, **overrides: Any) -> PushT:
        return cls(replace(PushTConfig(), **overrides))

    # -- spaces ------------------------------------------------------------------------------
    @property
    def action_dim(self) -> int:
        return 2

    @property
    def action_low(self) -> np.ndarray:
        return np.full(2, -self.config.max_action)

    @property
    def action_high(self) -> np.ndarray:
        return np.full(2, self.config.max_action)

    # -- state -------------------------------------------------------------------------------
    @property
    def state(self) -> np.ndarray:
        e = self.env
        return np.array([*e.agent.position, *e.block.position, e.block.angle % (2 * math.pi)], dtype=np.float64)

    def _set_state(self, state: np.ndarray) -> None:
        state = np.asarray(state, np.float64)
        if state.shape != (5,) or not np.all(np.isfinite(state)):
            raise ValueError(f"PushT: a state is [agent_x, agent_y, block_x, block_y, block_angle], got {state}")
        # A fresh physics space: teleporting bodies in a live one leaves stale contacts behind. The
        # angle goes first: pymunk rotates about the centre of gravity, which would move a position
        # set before it (gym-pusht's own reset keeps that legacy order; we want state round trips).
        e = self.env
        e._setup()
        e.agent.position = (float(state[0]), float(state[1]))
        e.block.angle = float(state[4])
        e.block.position = (float(state[2]), float(state[3]))
        e.space.step(e.dt)

    def physics_state(self) -> np.ndarray:
        """The full physics state: ``state`` plus agent velocity, block velocity and spin (10 numbers)."""
        e = self.env
        return np.array([*self.state, *e.agent.velocity, *e.block.velocity, e.block.angular_velocity], np.float64)

    def _set_physics(self, full: np.ndarray) -> None:
        """Restore a ``physics_state`` exactly (in the live space: positions and velocities only)."""
        e = self.env
        e.agent.position = (float(full[0]), float(full[1]))
        e.block.angle = float(full[4])
        e.block.position = (float(full[2]), float(full[3]))
        e.agent.velocity = (float(full[5]), float(full[6]))
        e.block.velocity = (float(full[7]), float(full[8]))
        e.block.angular_velocity = float(full[9])
        e.space.reindex_shapes_for_body(e.agent)
        e.space.reindex_shapes_for_body(e.block)

    def simulate(self, actions: np.ndarray) -> np.ndarray:
        """States ``[N, T, 5]`` after each of ``actions [N, T, 2]``, each sequence played on the
        simulator from the current physics state (velocities included); the state is restored
        afterwards, and the episode's step count and goal are untouched."""
        a = np.asarray(actions, np.float64)
        if a.ndim != 3 or a.shape[-1] != 2:
            raise ValueError(f"PushT.simulate: actions must be [N, T, 2], got {a.shape}")
        keep, steps, goal = self.physics_state(), self.steps, self.goal
        out = np.empty((a.shape[0], a.shape[1], 5))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for n in range(a.shape[0]):
                self._set_physics(keep)
                for t in range(a.shape[1]):
                    self._advance(a[n, t])
                    out[n, t] = self.state
        self._set_physics(keep)
        self.steps, self.goal = steps, goal
        return out

    def _advance(self, action: np.ndarray) -> np.ndarray:
        """One control step of a relative action (clipped to the box, target clamped to the table);
        returns the axes on which the table edge stopped the target."""
        action = np.clip(action, self.action_low, self.action_high)
        target = np.asarray(self.env.agent.position, np.float64) + action
        clamped = np.clip(target, 0.0, TABLE)
        self.env.step(clamped)
        return np.abs(clamped - target) > 1e-9

    def object_position(self, state: np.ndarray) -> np.ndarray:
        """The block's position."""
        return np.asarray(state, np.float64)[..., 2:4]

    def state_labels(self, states: np.ndarray, arrays: Mapping[str, np.ndarray]) -> dict[str, tuple[np.ndarray, list[str]]]:
        """Halves of the table the agent and the block are in (``agent_x`` / ``agent_y`` /
        ``block_x`` / ``block_y``), the block's angle in quarter turns, and whether the agent is
        within 60 table units of the block (``agent_near_block``)."""
        s = np.asarray(states, np.float64)
        half = TABLE / 2
        quarter = np.minimum(3, (s[:, 4] % (2 * math.pi)) // (math.pi / 2)).astype(np.int64)
        near = np.linalg.norm(s[:, :2] - s[:, 2:4], axis=1) < 60.0
        return {
            "agent_x": ((s[:, 0] >= half).astype(np.int64), ["left half", "right half"]),
            "agent_y": ((s[:, 1] >= half).astype(np.int64), ["lower y half", "upper y half"]),
            "block_x": ((s[:, 2] >= half).astype(np.int64), ["left half", "right half"]),
            "block_y": ((s[:, 3] >= half).astype(np.int64), ["lower y half", "upper y half"]),
            "block_angle": (quarter, ["0-90 deg", "90-180 deg", "180-270 deg", "270-360 deg"]),
            "agent_near_block": (near.astype(np.int64), ["no", "yes"]),
        }

    def goal_distance(self, states: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """Distance in the units of the success test: the (agent, block) position distance plus the
        block's angle error scaled so that both tolerances weigh the same."""
        states, goal = np.asarray(states, np.float64), np.asarray(goal, np.float64)
        c = self.config
        pos = np.linalg.norm(states[..., :4] - goal[..., :4], axis=-1)
        return pos + angle_difference(states[..., 4], goal[..., 4]) * (c.position_tolerance / c.angle_tolerance)

    def sample_start(self) -> np.ndarray:
        """Block uniform on the table (gym-pusht's range), agent at ``start_radius`` from it, not touching it."""
        from gym_pusht.envs.pusht import pymunk_to_shapely
        from shapely.geometry import Point

        lo, hi = self.config.start_radius
        for _ in range(1000):
            block = np.array([*self.rng.uniform(100, 400, size=2), self.rng.uniform(0, 2 * math.pi)])
            r, phi = self.rng.uniform(lo, hi), self.rng.uniform(0, 2 * math.pi)
            agent = np.clip(block[:2] + r * np.array([math.cos(phi), math.sin(phi)]), 30, TABLE - 30)
            state = np.concatenate([agent, block])
            self._set_state(state)
            geom = pymunk_to_shapely(self.env.block, self.env.block.shapes)
            if geom.distance(Point(*agent)) > 20:  # agent radius 15 plus a margin
                return self.state
        raise RuntimeError("PushT: could not place the agent off the block")

    def sample_goal(self, other_room: bool | None = None, tries: int = 100) -> np.ndarray:
        """A goal state ``goal_steps`` random-walk steps from the current state that moves the block.

        ``other_room`` is accepted for interface parity with Two Rooms and ignored. The walk uses
        this environment's RNG (seeded by ``reset(seed)``), so goals come from the evaluation seed.
        """
        start, c = self.state, self.config
        best, best_motion = start, -1.0
        for _ in range(tries):
            self._set_state(start)
            self.goal = None
            RandomWalkPolicy().rollout(self, c.goal_steps, self.rng, reset=False)
            end = self.state
            motion = max(float(np.linalg.norm(end[2:4] - start[2:4])),
                         float(angle_difference(end[4], start[4])) * c.min_block_motion / 0.1)
            solved = bool(pusht_success(start, end, c.position_tolerance, c.angle_tolerance))
            if not solved and motion > best_motion:
                best, best_motion = end, motion
            if not solved and motion >= c.min_block_motion:
                break
        self._set_state(start)
        self.goal = best
        return self.goal

    # -- episode -----------------------------------------------------------------------------
    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        options = options or {}
        if "state" in options:
            self._set_state(options["state"])
        else:
            self.sample_start()
        self.goal = np.asarray(options["goal"], dtype=np.float64) if options.get("goal") is not None else None
        self.steps = 0
        return self.render(), self.info()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (2,):
            raise ValueError(f"PushT.step: action must have shape (2,), got {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"PushT.step: action must be finite, got {action}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            blocked = self._advance(action)
        self.steps += 1
        info = self.info()
        # Axes on which the table edge stopped the target: a random walk reverses along them.
        info["blocked"] = blocked
        success = bool(info.get("success", False))
        truncated = self.steps >= self.config.max_steps
        return self.render(), float(success), success, truncated, info

    def render(self) -> np.ndarray:
        return np.ascontiguousarray(self.env._render(visualize=False))

    def render_state(self, state: np.ndarray) -> np.ndarray:
        """The observation of ``state`` (the current state is restored afterwards)."""
        keep = self.state
        self._set_state(state)
        frame = self.render()
        self._set_state(keep)
        return frame

    def is_success(self, state: np.ndarray | None = None, goal: np.ndarray | None = None) -> bool:
        """DINO-WM's test (:func:`pusht_success`) with this config's tolerances (default: current state and goal)."""
        goal = self.goal if goal is None else goal
        if goal is None:
            return False
        s = self.state if state is None else np.asarray(state)
        c = self.config
        return bool(pusht_success(s, goal, c.position_tolerance, c.angle_tolerance))

    def success_rule(self) -> str:
        c = self.config
        return (f"DINO-WM: ||(agent, block) xy - goal|| < {c.position_tolerance:g} and block angle within "
                f"{c.angle_tolerance:.4f} rad")

    def success_parameters(self) -> dict[str, float]:
        return {"position_tolerance": self.config.position_tolerance, "angle_tolerance": self.config.angle_tolerance}

    # -- pictures (goal_picture: the base's goal image beside the frame) ---------------------
    def path_coordinates(self, states: np.ndarray) -> np.ndarray:
        """The block's position."""
        return np.asarray(states)[..., 2:4]

    def plot_extent(self) -> tuple[float, float]:
        return (0.0, TABLE)

    def distance_to_goal(self, state: np.ndarray | None = None) -> float:
        if self.goal is None:
            raise ValueError("PushT: no goal set")
        s = self.state if state is None else np.asarray(state)
        return float(np.linalg.norm(s[:4] - self.goal[:4]))

    def info(self) -> dict[str, Any]:
        state = self.state
        info: dict[str, Any] = {"state": state, "room": 0, "steps": self.steps}
        if self.goal is not None:
            info["goal"] = self.goal.copy()
            info["distance"] = self.distance_to_goal(state)
            info["angle_difference"] = float(angle_difference(state[4], self.goal[4]))
            info["success"] = self.is_success(state)
        return info

