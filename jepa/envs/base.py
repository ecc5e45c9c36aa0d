"""What every environment implements: the interface collection, planning and evaluation rely on.

An environment is Gymnasium-style (``reset(seed, options)``, ``step(action)``, ``render()``) and
also owns the rules evaluation needs, so that nothing outside it guesses from its configuration:

* spaces: ``action_low`` / ``action_high`` (the box), ``max_action_norm`` (a cap on the action's
  length, or ``None``), ``action_dim``;
* goals: ``sample_goal`` draws one from the environment's RNG, ``is_success(state, goal)`` is the
  success test, ``success_rule()`` describes it for reports, ``success_parameters()`` gives its
  numbers, ``render_goal()`` / ``render_state(state)`` draw states;
* episodes: ``episode_options()`` (the ``reset`` options that rebuild the current episode),
  ``episode_arrays()`` (extra arrays stored with a collected episode), ``room(state)`` (which
  part of the world a state is in, for "other room" statistics; 0 where there are no rooms),
  ``state_labels(states, arrays)`` (discrete facts about recorded states, which ``jepa inspect
  --world-model`` names latent atoms by; none by default);
* pictures: ``goal_picture(frame, goal)`` (a frame with its goal shown, for GIFs) and
  ``plot_paths(ax, results)`` (paths over the arena, for ``trajectories.png``);
* ``has_true_dynamics``: whether ``dynamics(states, actions)`` steps a batch of states;
  ``has_simulator``: whether ``simulate(actions)`` plays action sequences from the current full
  state (velocities included) and restores it. Either gives the "perfect model" planner check
  (the same planner on the true dynamics), with ``goal_distance`` as its cost.

Subclasses implement the abstract members; the rest have defaults that fit most environments.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol

import numpy as np


def clip_actions(actions: np.ndarray, max_norm: float) -> np.ndarray:
    """Scale each action ``[..., A]`` down to length ``max_norm`` where it is longer."""
    a = np.asarray(actions, dtype=np.float64)
    norm = np.linalg.norm(a, axis=-1, keepdims=True)
    return a * np.minimum(1.0, max_norm / np.maximum(norm, 1e-12))


class PathResult(Protocol):
    """What ``Env.plot_paths`` reads from an episode (``jepa.planning.mpc.EpisodeResult`` has it)."""

    success: bool
    states: np.ndarray  # [T, S]
    goal: np.ndarray  # [S]


class Env(ABC):
    """Base class of the environments; see the module doc for what each member is for."""

    name: ClassVar[str] = ""  # the registry / CLI name
    has_true_dynamics: ClassVar[bool] = False  # True: ``dynamics`` steps batches of states
    has_simulator: ClassVar[bool] = False  # True: ``simulate`` plays action sequences from the current state
    path_subject: ClassVar[str] = "agent"  # what ``path_coordinates`` follows, for plot titles
    state_names: ClassVar[tuple[str, ...]] = ()  # names of the state's leading columns (``jepa inspect``'s read-out)
    state: np.ndarray  # the current true state [S] (an attribute or a property)
    goal: np.ndarray | None  # the current goal state, if one is set

    # -- spaces ------------------------------------------------------------------------------
    @property
    @abstractmethod
    def action_low(self) -> np.ndarray: ...

    @property
    @abstractmethod
    def action_high(self) -> np.ndarray: ...

    @property
    def max_action_norm(self) -> float | None:
        """The largest action length the environment accepts (longer ones are scaled down), or ``None``."""
        return None

    @property
    def action_dim(self) -> int:
        return int(np.asarray(self.action_high).shape[-1])

    # -- episode -----------------------------------------------------------------------------
    @abstractmethod
    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]: ...

    @abstractmethod
    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]: ...

    @abstractmethod
    def render(self) -> np.ndarray: ...

    @abstractmethod
    def render_state(self, state: np.ndarray) -> np.ndarray:
        """The observation of ``state`` (the environment's own state is left as it is)."""

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """The info dict of the current state (what ``reset`` and ``step`` return): at least ``"state"``."""

    def _info(self) -> dict[str, Any]:  # the older name
        return self.info()

    def episode_options(self) -> dict[str, Any]:
        """``reset`` options that rebuild the current episode (start state, goal and anything else drawn)."""
        return {"state": self.state.copy(), "goal": None if self.goal is None else self.goal.copy()}

    def episode_arrays(self) -> dict[str, np.ndarray]:
        """Extra arrays saved with a collected episode, besides actions and states."""
        return {}

    def options_from_arrays(self, arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """``reset`` options that rebuild a recorded episode's setting from its saved arrays
        (the inverse of ``episode_arrays``; Two Rooms: the layout)."""
        return {}

    def object_position(self, state: np.ndarray) -> np.ndarray | None:
        """Where the object the agent can push is in ``state`` (for the push collection policy);
        ``None`` where there is none."""
        return None

    def room(self, state: np.ndarray) -> int:
        """Which room ``state`` is in (evaluation counts episodes whose goal is in another room)."""
        return 0

    def state_labels(self, states: np.ndarray, arrays: Mapping[str, np.ndarray]) -> dict[str, tuple[np.ndarray, list[str]]]:
        """Discrete facts about each of a recorded episode's ``states [N, S]`` (its saved ``arrays``,
        as ``episode_arrays`` wrote them, give the setting): label name -> (int64 values ``[N]``, the
        name of each value). ``jepa inspect --world-model`` names latent atoms by them; an
        environment without any returns ``{}``."""
        return {}

    # -- goals -------------------------------------------------------------------------------
    @abstractmethod
    def sample_goal(self, other_room: bool | None = None) -> np.ndarray:
        """Draw a goal state from the environment's RNG, set it as the goal and return it."""

    @abstractmethod
    def is_success(self, state: np.ndarray | None = None, goal: np.ndarray | None = None) -> bool:
        """The success test of ``state`` (default: the current one) against ``goal`` (default: the goal set)."""

    @abstractmethod
    def success_rule(self) -> str:
        """The success test in words, for reports."""

    def success_parameters(self) -> dict[str, float]:
        """The success test's numbers (tolerances), for reports."""
        return {}

    def render_goal(self) -> np.ndarray:
        if self.goal is None:
            raise ValueError(f"{type(self).__name__}.render_goal: no goal set (reset with options={{'goal': ...}} "
                             "or call sample_goal)")
        return self.render_state(self.goal)

    # -- true dynamics -----------------------------------------------------------------------
    def dynamics(self, state: np.ndarray, action: np.ndarray) -> np.ndarray:
        """Next states of a batch ``state [..., S]``, ``action [..., A]`` (only if ``has_true_dynamics``)."""
        raise NotImplementedError(f"{type(self).__name__} has no batched true dynamics")

    def simulate(self, actions: np.ndarray) -> np.ndarray:
        """States ``[N, T, S]`` after each of the action sequences ``[N, T, A]``, each played from the
        current state; the environment is left as it was. Default: batched ``dynamics``."""
        a = np.asarray(actions, np.float64)
        if not self.has_true_dynamics:
            raise NotImplementedError(f"{type(self).__name__} has neither batched dynamics nor a simulator")
        s = np.broadcast_to(self.state, (a.shape[0], len(self.state))).copy()
        out = np.empty((a.shape[0], a.shape[1], len(self.state)))
        for t in range(a.shape[1]):
            s = self.dynamics(s, a[:, t])
            out[:, t] = s
        return out

    def goal_distance(self, states: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """How far states ``[..., S]`` are from ``goal`` (the perfect-model planner's cost); default:
        Euclidean distance of the state vectors."""
        return np.linalg.norm(np.asarray(states, np.float64) - np.asarray(goal, np.float64), axis=-1)

    # -- pictures ----------------------------------------------------------------------------
    def goal_picture(self, frame: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """``frame`` with ``goal`` shown; by default the goal's image beside the frame, after a white gap."""
        return np.concatenate([frame, np.full_like(frame[:, :2], 255), self.render_state(goal)], axis=1)

    def path_coordinates(self, states: np.ndarray) -> np.ndarray:
        """The 2D points ``[..., 2]`` that ``plot_paths`` draws for states ``[..., S]`` (default: the first two)."""
        return np.asarray(states)[..., :2]

    def plot_extent(self) -> tuple[float, float]:
        """Axis limits (the same for x and y) of ``plot_paths``; y points down, as in the images."""
        return (0.0, 1.0)

    def arena_patches(self, ax: Any) -> None:
        """Draw the static scene (walls, ...) on a matplotlib ``ax`` under the paths."""
        return None  # nothing by default

    def plot_paths(self, ax: Any, results: Sequence[PathResult]) -> None:
        """Every episode's path on ``ax``: green if it succeeded, red if not; start o, goal *."""
        self.arena_patches(ax)
        for r in results:
            c = "tab:green" if r.success else "tab:red"
            xy = self.path_coordinates(r.states)
            ax.plot(xy[:, 0], xy[:, 1], color=c, lw=0.8, alpha=0.8)
            ax.plot(*xy[0], "o", color=c, ms=3)
            ax.plot(*self.path_coordinates(r.goal), "*", color="k", ms=5)
        lo, hi = self.plot_extent()
        ax.set_xlim(lo, hi)
        ax.set_ylim(hi, lo)
        ax.set_aspect("equal")
