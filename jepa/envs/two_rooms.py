"""Two Rooms: a point agent in a square arena split by a wall with one door (numpy only).

The arena is ``size x size`` pixels (65 by default) with coordinates ``x`` (column, right) and
``y`` (row, down) in ``[0, size - 1]``. A vertical wall of width ``wall_width`` centred on
``wall_x`` splits it into a left and a right room; a door of height ``door_size`` centred on
``door_y`` lets the agent through. Actions are 2D displacements in pixels; an action longer than
``max_action_norm`` is scaled down to it. Walls block motion: the agent slides along a wall it
runs into (the blocked axis stops, the other keeps moving) and never enters it, and the arena's
border clamps it. ``border`` > 0 adds border walls of that thickness inside the arena's edges (the
EB-JEPA / PLDM arena: 4 px), drawn like the wall; the agent then stays in
``[border, size - 1 - border]``.

``TwoRoomsConfig.eb_jepa()`` is the EB-JEPA / PLDM layout distribution: a new wall x in
``[20, 44]`` and door centre y in ``[10, 54]`` per episode, a 9 px door and 4 px border walls.

The state is the agent's position; ``dynamics`` steps a whole batch of states at once, so a
planner can use the true dynamics ("perfect model" check) without a Python loop over samples.
Observations are ``obs_size x obs_size`` RGB uint8 images: the wall in grey and the agent as an
anti-aliased disc, drawn with sub-pixel precision so that the position can be read back from the
pixels to a fraction of a pixel.

    env = TwoRooms()
    obs, info = env.reset(seed=0)           # info["state"] is the agent's (x, y)
    obs, reward, terminated, truncated, info = env.step(np.array([1.5, -0.5]))
    frame = env.render()

``reset(seed, options={"state": (x, y), "goal": (x, y)})`` places agent and goal by hand; a
``goal`` in the options (or ``sample_goal``) makes ``step`` report ``info["success"]`` (within
``success_radius`` pixels of the goal, ``is_success``) and a reward of 1 on success.
``TwoRooms`` implements :class:`jepa.envs.base.Env` (registered as ``two-rooms``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar

import numpy as np

from jepa.envs.base import Env, clip_actions

__all__ = ["EB_JEPA_FIXED_LAYOUT", "EB_JEPA_LAYOUT", "Layout", "TwoRooms", "TwoRoomsConfig", "clip_actions", "dynamics", "render_state"]

AGENT_COLOR = np.array([255, 80, 40], dtype=np.float32)
WALL_COLOR = np.array([150, 150, 150], dtype=np.float32)
FLOOR_COLOR = np.array([20, 20, 30], dtype=np.float32)


@dataclass(frozen=True)
class TwoRoomsConfig:
    """Geometry and physics. ``random_wall`` / ``random_door`` redraw wall x / door y per reset."""

    size: int = 65
    wall_x: float = 32.0
    wall_width: float = 3.0
    door_y: float = 32.0
    door_size: float = 12.0
    max_action_norm: float = 2.5
    obs_size: int = 64
    agent_radius: float = 2.5  # drawn radius in arena pixels (the agent is a point for physics)
    success_radius: float = 4.5
    max_steps: int = 200
    random_wall: bool = False
    random_door: bool = False
    wall_range: tuple[float, float] = (20.0, 44.0)
    door_range: tuple[float, float] = (14.0, 50.0)
    substeps: int = 4  # collision sub-steps per action (each moves at most max_action_norm / substeps)
    border: float = 0.0  # thickness of border walls inside the arena's edges (0: none)
    spawn_margin: float = 1.0  # drawn starts and goals keep this far from the arena's edges
    wall_margin: float | None = None  # ... and this far from the wall's centre line (None: wall_width)
    integer_layouts: bool = False  # random wall x / door y drawn as whole pixels (EB-JEPA's range())

    @classmethod
    def eb_jepa(cls, **overrides: Any) -> TwoRoomsConfig:
        """EB-JEPA / PLDM's layout distribution: random wall and door per episode, 9 px door, 4 px border walls."""
        return replace(cls(**EB_JEPA_LAYOUT), **overrides)

    def __post_init__(self) -> None:
        if self.size < 8 or self.obs_size < 8:
            raise ValueError(f"TwoRooms: size and obs_size must be >= 8, got {self.size}, {self.obs_size}")
        if self.max_action_norm <= 0:
            raise ValueError(f"TwoRooms: max_action_norm must be > 0, got {self.max_action_norm}")
        if not 0 <= self.border < self.size / 4:
            raise ValueError(f"TwoRooms: border must be in [0, size / 4), got {self.border}")
        if self.max_action_norm / self.substeps > self.wall_width:
            raise ValueError(
                "TwoRooms: an action sub-step could jump the wall; raise substeps or wall_width "
                f"(max_action_norm / substeps = {self.max_action_norm / self.substeps} > wall_width = {self.wall_width})"
            )


# EB-JEPA's Two Rooms (65 px, wall 3 px wide): whole-pixel wall x in [20, 44], door centre y in [10, 54], door
# half-height 4 (9 px), border walls at pixels 4 and 60, actions capped at norm 2.45; starts and goals
# at least 6.6 px from the edges and 2.6 px from the wall's faces (1.5 + 2.6 from its centre line).
EB_JEPA_LAYOUT: dict[str, Any] = {
    "random_wall": True, "random_door": True, "wall_range": (20.0, 44.0), "door_range": (10.0, 54.0),
    "door_size": 9.0, "border": 4.0, "max_action_norm": 2.45, "spawn_margin": 6.6, "wall_margin": 4.1,
    "integer_layouts": True,
}
# EB-JEPA's fixed-wall setting (fix_wall: true): wall at x = 32, door centred at y = 18, otherwise as above.
EB_JEPA_FIXED_LAYOUT: dict[str, Any] = EB_JEPA_LAYOUT | {"random_wall": False, "random_door": False,
                                                         "wall_x": 32.0, "door_y": 18.0}


@dataclass
class Layout:
    """Where the wall and door are in the current episode."""

    wall_x: float
    door_y: float
    wall_width: float
    door_size: float
    border: float = 0.0
    size: float = 65.0

    @property
    def wall_lo(self) -> float:
        return self.wall_x - self.wall_width / 2

    @property
    def wall_hi(self) -> float:
        return self.wall_x + self.wall_width / 2

    @property
    def door_lo(self) -> float:
        return self.door_y - self.door_size / 2

    @property
    def door_hi(self) -> float:
        return self.door_y + self.door_size / 2

    def blocked(self, xy: np.ndarray) -> np.ndarray:
        """True where a point ``[..., 2]`` lies inside the wall (not in the door)."""
        x, y = xy[..., 0], xy[..., 1]
        in_wall = (x > self.wall_lo) & (x < self.wall_hi)
        in_door = (y > self.door_lo) & (y < self.door_hi)
        blocked = in_wall & ~in_door
        if self.border > 0:
            lo, hi = self.border, self.size - 1 - self.border
            blocked = blocked | (x < lo) | (x > hi) | (y < lo) | (y > hi)
        return blocked

    def room(self, xy: np.ndarray) -> np.ndarray:
        """0 for the left room, 1 for the right one (points in the doorway count by their side of ``wall_x``)."""
        return (np.asarray(xy)[..., 0] >= self.wall_x).astype(np.int64)


def dynamics(state: np.ndarray, action: np.ndarray, layout: Layout, cfg: TwoRoomsConfig) -> np.ndarray:
    """Next agent positions for a batch: ``state [..., 2]`` and ``action [..., 2]`` -> ``[..., 2]``.

    The action is capped to ``cfg.max_action_norm`` and applied in ``cfg.substeps`` equal parts;
    a part that would end inside the wall keeps only the axis that stays out of it (sliding), or
    neither. The border clamps to ``[border, size - 1 - border]``.
    """
    pos = np.array(state, dtype=np.float64, copy=True)
    step = clip_actions(action, cfg.max_action_norm) / cfg.substeps
    pos, step = np.broadcast_arrays(pos, step)
    pos = pos.copy()
    lo, hi = layout.border, cfg.size - 1.0 - layout.border
    for _ in range(cfg.substeps):
        full = np.clip(pos + step, lo, hi)
        only_x = np.stack([full[..., 0], pos[..., 1]], axis=-1)
        only_y = np.stack([pos[..., 0], full[..., 1]], axis=-1)
        ok_full = ~layout.blocked(full)
        ok_y = ~layout.blocked(only_y)
        ok_x = ~layout.blocked(only_x)
        # Prefer the full move; else slide along the axis that stays free; else stay.
        nxt = np.where(ok_full[..., None], full, np.where(ok_y[..., None], only_y, np.where(ok_x[..., None], only_x, pos)))
        pos = nxt
    return pos


def render_state(xy: np.ndarray, layout: Layout, cfg: TwoRoomsConfig) -> np.ndarray:
    """RGB uint8 ``[..., obs_size, obs_size, 3]`` images of agents at ``xy [..., 2]``."""
    xy = np.asarray(xy, dtype=np.float64)
    s = cfg.obs_size / cfg.size  # obs pixels per arena pixel
    # Arena pixel i covers [i - 0.5, i + 0.5]; obs pixel j covers the same span scaled by 1 / s.
    centres = (np.arange(cfg.obs_size) + 0.5) / s - 0.5  # obs pixel centres in arena coordinates
    # The wall as an anti-aliased band with a gap: coverage of each pixel column / row.
    half = 0.5 / s
    col_cov = np.clip(np.minimum(centres + half, layout.wall_hi) - np.maximum(centres - half, layout.wall_lo), 0, None) * s
    row_gap = np.clip(np.minimum(centres + half, layout.door_hi) - np.maximum(centres - half, layout.door_lo), 0, None) * s
    wall = col_cov[None, :] * (1.0 - row_gap[:, None])  # [H, W]
    if layout.border > 0:  # border walls: coverage of the band outside [border - 0.5, size - 0.5 - border]
        inner = np.clip(np.minimum(centres + half, cfg.size - 0.5 - layout.border)
                        - np.maximum(centres - half, layout.border - 0.5), 0, None) * s
        wall = np.maximum(wall, 1.0 - inner[None, :] * inner[:, None])
    base = FLOOR_COLOR + wall[..., None] * (WALL_COLOR - FLOOR_COLOR)
    # The agent as a disc with a one-pixel soft edge (area-like anti-aliasing).
    cx = xy[..., 0, None, None]
    cy = xy[..., 1, None, None]
    d = np.sqrt((centres[None, :] - cx) ** 2 + (centres[:, None] - cy) ** 2)
    alpha = np.clip(cfg.agent_radius - d + 0.5, 0.0, 1.0)[..., None]
    img = base + alpha * (AGENT_COLOR - base)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


@dataclass
class TwoRooms(Env):
    """Gymnasium-style Two Rooms environment (``reset``, ``step``, ``render``); see the module doc."""

    name: ClassVar[str] = "two-rooms"
    state_names: ClassVar[tuple[str, ...]] = ("agent_x", "agent_y")
    has_true_dynamics: ClassVar[bool] = True
    path_subject: ClassVar[str] = "agent"

    config: TwoRoomsConfig = field(default_factory=TwoRoomsConfig)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng()
        self.layout = self._default_layout()
        self.state = np.array([self.config.size / 4, self.config.size / 2])
        self.goal: np.ndarray | None = None
        self.steps = 0

    @classmethod
    def make(cls, **overrides: Any) -> TwoRooms:
        return cls(replace(TwoRoomsConfig(), **overrides))

    # -- spaces ------------------------------------------------------------------------------
    @property
    def action_dim(self) -> int:
        return 2

    @property
    def action_low(self) -> np.ndarray:
        return np.full(2, -self.config.max_action_norm)

    @property
    def action_high(self) -> np.ndarray:
        return np.full(2, self.config.max_action_norm)

    @property
    def max_action_norm(self) -> float:
        return self.config.max_action_norm

    # -- episode -----------------------------------------------------------------------------
    def _default_layout(self) -> Layout:
        c = self.config
        return Layout(c.wall_x, c.door_y, c.wall_width, c.door_size, c.border, c.size)

    def _draw_layout(self) -> Layout:
        c = self.config
        def draw(lo: float, hi: float) -> float:
            return float(self.rng.integers(int(lo), int(hi) + 1)) if c.integer_layouts else float(self.rng.uniform(lo, hi))

        wall_x = draw(*c.wall_range) if c.random_wall else c.wall_x
        door_y = draw(*c.door_range) if c.random_door else c.door_y
        return Layout(wall_x, door_y, c.wall_width, c.door_size, c.border, c.size)

    def sample_free_state(self, room: int | None = None) -> np.ndarray:
        """A uniformly drawn position off the wall, in ``room`` (0 left, 1 right) if given."""
        c = self.config
        margin = max(c.spawn_margin, self.layout.border + 1.0)
        wall_margin = self.layout.wall_width if c.wall_margin is None else c.wall_margin
        for _ in range(1000):
            xy = self.rng.uniform(margin, c.size - 1 - margin, size=2)
            if self.layout.blocked(xy) or abs(xy[0] - self.layout.wall_x) < wall_margin:
                continue
            if room is not None and int(self.layout.room(xy)) != room:
                continue
            return xy
        raise RuntimeError("TwoRooms: could not sample a free position (is the wall wider than the arena?)")

    def sample_goal(self, other_room: bool | None = None) -> np.ndarray:
        """Draw a goal position; ``other_room=True`` puts it in the room the agent is not in."""
        room = None
        if other_room is not None:
            here = int(self.layout.room(self.state))
            room = 1 - here if other_room else here
        self.goal = self.sample_free_state(room)
        return self.goal

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        options = options or {}
        self.layout = self._draw_layout()
        if "layout" in options:
            self.layout = Layout(**({"size": float(self.config.size)} | dict(options["layout"])))
        self.state = np.asarray(options["state"], dtype=np.float64) if "state" in options else self.sample_free_state()
        if self.layout.blocked(self.state):
            raise ValueError(f"TwoRooms.reset: start state {tuple(self.state)} is inside the wall")
        self.goal = np.asarray(options["goal"], dtype=np.float64) if options.get("goal") is not None else None
        self.steps = 0
        return self.render(), self.info()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (2,):
            raise ValueError(f"TwoRooms.step: action must have shape (2,), got {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"TwoRooms.step: action must be finite, got {action}")
        self.state = dynamics(self.state, action, self.layout, self.config)
        self.steps += 1
        info = self.info()
        success = bool(info.get("success", False))
        truncated = self.steps >= self.config.max_steps
        return self.render(), float(success), success, truncated, info

    def render(self) -> np.ndarray:
        return render_state(self.state, self.layout, self.config)

    def render_state(self, state: np.ndarray) -> np.ndarray:
        return render_state(state, self.layout, self.config)

    # -- batched true dynamics (for planners) -----------------------------------------------
    def dynamics(self, state: np.ndarray, action: np.ndarray) -> np.ndarray:
        return dynamics(state, action, self.layout, self.config)

    def distance_to_goal(self, state: np.ndarray | None = None) -> float:
        if self.goal is None:
            raise ValueError("TwoRooms: no goal set")
        s = self.state if state is None else np.asarray(state)
        return float(np.linalg.norm(s - self.goal))

    def is_success(self, state: np.ndarray | None = None, goal: np.ndarray | None = None) -> bool:
        """Within ``success_radius`` pixels of the goal (default: the current state and goal)."""
        goal = self.goal if goal is None else goal
        if goal is None:
            return False
        s = self.state if state is None else state
        d = np.linalg.norm(np.asarray(s, np.float64) - np.asarray(goal, np.float64))
        return bool(d <= self.config.success_radius)

    def success_rule(self) -> str:
        return f"agent within {self.config.success_radius} px of the goal"

    def success_parameters(self) -> dict[str, float]:
        return {"success_radius": self.config.success_radius}

    def room(self, state: np.ndarray) -> int:
        return int(self.layout.room(state))

    def episode_options(self) -> dict[str, Any]:
        return super().episode_options() | {"layout": dict(vars(self.layout))}

    def state_labels(self, states: np.ndarray, arrays: Mapping[str, np.ndarray]) -> dict[str, tuple[np.ndarray, list[str]]]:
        """``room`` (left / right), ``door_side`` (the agent above, level with or below the door's
        opening, in image rows), ``wall_distance`` (from the wall's nearer face: under 4 px, 4-12,
        over 12), the agent's ``agent_x`` / ``agent_y`` in thirds of the arena, and the layout's
        ``wall_x`` / ``door_y`` in thirds of their drawing ranges."""
        layout_kw = self.options_from_arrays(arrays).get("layout")
        lay = Layout(**layout_kw) if layout_kw else self.layout
        xy = np.asarray(states, np.float64)[:, :2]
        n = len(xy)
        x, y = xy[:, 0], xy[:, 1]
        side = np.where(y < lay.door_lo, 0, np.where(y > lay.door_hi, 2, 1))
        gap = np.abs(x - lay.wall_x) - lay.wall_width / 2
        dist = np.digitize(gap, [4.0, 12.0])
        c = self.config

        def third(v: float, lo: float, hi: float) -> np.ndarray:
            return np.full(n, min(2, max(0, int(3 * (v - lo) / max(hi - lo, 1e-9)))), np.int64)

        return {
            "room": (lay.room(xy).astype(np.int64), ["left", "right"]),
            "door_side": (side.astype(np.int64), ["above door", "level with door", "below door"]),
            "wall_distance": (dist.astype(np.int64), ["under 4 px", "4-12 px", "over 12 px"]),
            "agent_x": (np.clip(3 * x // c.size, 0, 2).astype(np.int64), ["left third", "middle third", "right third"]),
            "agent_y": (np.clip(3 * y // c.size, 0, 2).astype(np.int64), ["top third", "middle third", "bottom third"]),
            "wall_x": (third(lay.wall_x, *c.wall_range), ["left third", "middle third", "right third"]),
            "door_y": (third(lay.door_y, *c.door_range), ["top third", "middle third", "bottom third"]),
        }

    def episode_arrays(self) -> dict[str, np.ndarray]:
        return {f"layout_{k}": np.float32(v) for k, v in asdict(self.layout).items()}

    def options_from_arrays(self, arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
        layout = {k[len("layout_"):]: float(v) for k, v in arrays.items() if k.startswith("layout_")}
        return {"layout": layout} if layout else {}

    # -- pictures ----------------------------------------------------------------------------
    def goal_picture(self, frame: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """A green ring of radius ``success_radius`` around the goal, on a copy of ``frame``."""
        c = self.config
        out = frame.copy()
        s = c.obs_size / c.size
        yy, xx = np.mgrid[0 : out.shape[0], 0 : out.shape[1]]
        cx, cy = (goal[0] + 0.5) * s - 0.5, (goal[1] + 0.5) * s - 0.5
        d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
        r = c.success_radius * s
        out[(d > r - 0.7) & (d < r + 0.7)] = (40, 220, 60)
        return out

    def plot_extent(self) -> tuple[float, float]:
        return (-0.5, self.config.size - 0.5)

    def arena_patches(self, ax: Any) -> None:
        """The wall, in grey, with its door."""
        from matplotlib.patches import Rectangle

        lay, size = self.layout, self.config.size
        ax.add_patch(Rectangle((lay.wall_lo, -0.5), lay.wall_width, lay.door_lo + 0.5, color="0.6"))
        ax.add_patch(Rectangle((lay.wall_lo, lay.door_hi), lay.wall_width, size - 0.5 - lay.door_hi, color="0.6"))
        if lay.border > 0:
            b = lay.border
            for xy, w, h in (((-0.5, -0.5), size, b), ((-0.5, size - 0.5 - b), size, b),
                             ((-0.5, -0.5), b, size), ((size - 0.5 - b, -0.5), b, size)):
                ax.add_patch(Rectangle(xy, w, h, color="0.6"))

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "state": self.state.copy(),
            "room": int(self.layout.room(self.state)),
            "layout": asdict(self.layout),
            "steps": self.steps,
        }
        if self.goal is not None:
            info["goal"] = self.goal.copy()
            info["distance"] = self.distance_to_goal()
            info["success"] = self.is_success()
        return info
