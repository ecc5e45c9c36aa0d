"""CEM / MPPI on known analytic models, action bounds, energies, the MPC loop on Two Rooms, and the
evaluation asking the environment for its rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from jepa.envs import TwoRooms, registry
from jepa.envs.base import Env
from jepa.envs.policies import RandomWalkPolicy
from jepa.planning import CEM, MPPI, latent_energy, make_planner
from jepa.planning.evaluate import PlanConfig, episode_starts, evaluate, summarise, write_outputs
from jepa.planning.mpc import EpisodeResult, TrueDynamicsCost, repeat_actions, run_episode


def integrator_cost(start: torch.Tensor, goal: torch.Tensor):
    """Point mass x_{t+1} = x_t + a_t: energy = distance of the final position to the goal."""

    def cost(actions: torch.Tensor) -> torch.Tensor:
        final = start + actions.sum(1)
        return (final - goal).norm(dim=-1)

    return cost


@pytest.mark.parametrize("kind", ["cem", "mppi"])
def test_planners_reach_a_goal_on_an_integrator(kind: str) -> None:
    start, goal = torch.tensor([0.0, 0.0]), torch.tensor([3.0, -2.0])
    planner = make_planner(kind, horizon=5, samples=128, iterations=8, action_low=-1.0, action_high=1.0, seed=0)
    result = planner.plan(integrator_cost(start, goal))
    final = start + result.actions.sum(0)
    assert (final - goal).norm() < 0.1
    assert result.history == sorted(result.history, reverse=True)  # best cost never gets worse
    assert result.history[-1] < result.history[0] or result.history[0] < 0.1


@pytest.mark.parametrize("cls", [CEM, MPPI])
def test_planners_respect_box_and_norm_bounds(cls: type) -> None:
    seen: list[torch.Tensor] = []

    def far_goal(actions: torch.Tensor) -> torch.Tensor:
        seen.append(actions.clone())
        return (actions.sum(1) - torch.tensor([100.0, 100.0])).norm(dim=-1)

    planner = cls(horizon=4, samples=64, iterations=5, action_low=[-2.0, -1.0], action_high=[2.0, 1.0], max_norm=1.5)
    result = planner.plan(far_goal)
    allc = torch.cat(seen)
    assert allc[..., 0].abs().max() <= 2.0 + 1e-6 and allc[..., 1].abs().max() <= 1.0 + 1e-6
    assert allc.norm(dim=-1).max() <= 1.5 + 1e-5
    assert result.actions.norm(dim=-1).max() <= 1.5 + 1e-5
    # The optimum pushes against the bounds: progress toward (1, 1) close to the most possible (4 x 1.5).
    progress = float(result.actions.sum(0) @ torch.tensor([1.0, 1.0])) / 2**0.5
    assert progress > 5.0


def test_planners_are_batched_and_seeded() -> None:
    calls: list[int] = []

    def cost(actions: torch.Tensor) -> torch.Tensor:
        calls.append(actions.shape[0])
        return actions.pow(2).sum((1, 2))

    a = MPPI(horizon=3, samples=50, iterations=4, seed=3).plan(cost).actions
    b = MPPI(horizon=3, samples=50, iterations=4, seed=3).plan(cost).actions
    torch.testing.assert_close(a, b)
    assert calls == [50] * 8  # one call per round with every sample in it
    with pytest.raises(ValueError, match="unknown planner"):
        make_planner("ilqr", horizon=3)


def test_latent_energy_matches_reference() -> None:
    torch.manual_seed(0)
    zs, goal = torch.randn(5, 4, 3, 2), torch.randn(3, 2)
    ref_final = torch.stack([torch.sqrt(((zs[i, -1] - goal) ** 2).sum()) for i in range(5)])
    torch.testing.assert_close(latent_energy(zs, goal, "l2", "final"), ref_final)
    ref_sum = torch.stack([sum((zs[i, t] - goal).abs().sum() for t in range(4)) for i in range(5)])
    torch.testing.assert_close(latent_energy(zs, goal, "l1", "sum"), ref_sum)


def test_repeat_actions_holds_each_action_for_frameskip_steps() -> None:
    a = torch.arange(12.0).reshape(2, 3, 2)
    r = repeat_actions(a, 3)
    assert r.shape == (2, 3, 6)
    torch.testing.assert_close(r.reshape(2, 3, 3, 2), a[:, :, None].expand(2, 3, 3, 2))


def test_mpc_on_true_dynamics_crosses_the_door() -> None:
    env = TwoRooms()
    env.reset(seed=0, options={"state": (10.0, 10.0), "goal": (55.0, 10.0)})
    planner = MPPI(horizon=10, samples=128, iterations=5, action_low=-2.5, action_high=2.5, max_norm=2.5, seed=0)
    res = run_episode(env, planner=planner, cost=TrueDynamicsCost(env, env.goal, frameskip=5), max_steps=200,
                      execute=1, frameskip=5)
    assert res.success, f"ended at {res.states[-1]} after {res.steps} steps"
    assert res.start_room == 0 and res.goal_room == 1
    assert np.linalg.norm(res.states[-1] - env.goal) <= env.config.success_radius
    assert len(res.replan_seconds) >= res.steps // 5


def test_random_baseline_and_summary() -> None:
    env = TwoRooms()
    starts = episode_starts(env, 6, seed=1)
    assert sum(env.layout.room(s["state"]) != env.layout.room(s["goal"]) for s in starts) >= 3
    again, other = episode_starts(env, 6, seed=1), episode_starts(env, 6, seed=2)
    for a, b in zip(starts, again, strict=True):  # the evaluation seed alone fixes start and goal
        np.testing.assert_array_equal(a["state"], b["state"])
        np.testing.assert_array_equal(a["goal"], b["goal"])
    assert not np.allclose(starts[0]["state"], other[0]["state"])
    results = []
    for i, st in enumerate(starts):
        env.reset(options={"state": st["state"], "goal": st["goal"]})
        results.append(run_episode(env, act=RandomWalkPolicy().actor(env, np.random.default_rng(i)), max_steps=20))
    s = summarise(results)
    assert s["episodes"] == 6 and 0.0 <= s["success_rate"] <= 1.0
    assert s["episode_success"] == [r.success for r in results] and sum(s["episode_success"]) == s["successes"]
    assert s["replan_seconds_median"] is None  # a policy does not replan
    assert all(len(r.states) == r.steps + 1 for r in results)


class Box(Env):
    """A point in ``[0, 10]^dim`` moved by its action (box ``[-1, 1]^dim``), stopped by the walls.

    Success (its own rule, which evaluation cannot guess): every coordinate within 0.5 of the goal's.
    """

    name: ClassVar[str] = "box"
    path_subject: ClassVar[str] = "point"

    def __init__(self, dim: int = 3) -> None:
        self.dim, self.rng = dim, np.random.default_rng()
        self.state, self.goal = np.full(dim, 5.0), None
        self.blocked_log: list[np.ndarray] = []

    @property
    def action_low(self) -> np.ndarray:
        return np.full(self.dim, -1.0)

    @property
    def action_high(self) -> np.ndarray:
        return np.full(self.dim, 1.0)

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        options = options or {}
        self.state = np.asarray(options["state"], np.float64) if "state" in options else self.rng.uniform(0, 10, self.dim)
        self.goal = np.asarray(options["goal"], np.float64) if options.get("goal") is not None else None
        return self.render(), self.info()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = np.asarray(action, np.float64)
        assert action.shape == (self.dim,) and np.all(action >= -1) and np.all(action <= 1), action
        target = self.state + action
        self.state = np.clip(target, 0.0, 10.0)
        info = self.info() | {"blocked": target != self.state}
        self.blocked_log.append(info["blocked"])
        ok = self.is_success()
        return self.render(), float(ok), ok, False, info

    def render(self) -> np.ndarray:
        return self.render_state(self.state)

    def render_state(self, state: np.ndarray) -> np.ndarray:
        img = np.zeros((8, 8, 3), np.uint8)
        img[..., 0] = int(25 * state[0])
        return img

    def info(self) -> dict[str, Any]:
        return {"state": self.state.copy()}

    def sample_goal(self, other_room: bool | None = None) -> np.ndarray:
        self.goal = self.rng.uniform(0, 10, self.dim)
        return self.goal

    def is_success(self, state: np.ndarray | None = None, goal: np.ndarray | None = None) -> bool:
        goal = self.goal if goal is None else goal
        s = self.state if state is None else state
        return goal is not None and bool(np.all(np.abs(np.asarray(s) - goal) < 0.5))

    def success_rule(self) -> str:
        return "box: every coordinate within 0.5 of the goal"

    def plot_extent(self) -> tuple[float, float]:
        return (0.0, 10.0)


def test_random_walk_works_in_any_action_dimension_and_bounces() -> None:
    env = Box(dim=3)
    obs, info = env.reset(seed=0, options={"state": [5.0, 5.0, 5.0]})
    act = RandomWalkPolicy(momentum=1.0, noise=0.0).actor(env, np.random.default_rng(1))  # straight lines
    actions = []
    for _ in range(60):
        actions.append(act(obs, info))
        obs, _, _, _, info = env.step(actions[-1])
    actions_ = np.array(actions)
    assert actions_.shape == (60, 3) and np.abs(actions_).max() <= 1.0
    flips = np.zeros(3, int)
    for t in range(59):  # an axis reverses exactly when the wall stopped it
        blocked = env.blocked_log[t]
        np.testing.assert_array_equal(np.sign(actions_[t + 1]), np.where(blocked, -1, 1) * np.sign(actions_[t]))
        flips += blocked
    assert np.all(flips >= 1)  # 60 steps at speeds 0.17, 0.41, 0.17 (rng 1) reach the walls on every axis
    env.reset(options={"state": [5.0, 5.0, 5.0]})
    sticky = RandomWalkPolicy(momentum=1.0, noise=0.0, bounce=False).actor(env, np.random.default_rng(1))
    obs, info = env.render(), env.info()
    first = sticky(obs, info)
    for _ in range(30):
        obs, _, _, _, info = env.step(first)
        np.testing.assert_array_equal(sticky(obs, info), first)


def test_run_episode_asks_the_environment_for_success() -> None:
    env = Box(dim=2)
    env.reset(options={"state": [5.0, 5.0], "goal": [5.3, 4.8]})
    res = run_episode(env, act=lambda obs, info: np.zeros(2), max_steps=5)
    assert res.success and res.steps == 0  # already within the box's rule at the start
    env.reset(options={"state": [5.0, 5.0], "goal": [5.6, 5.0]})  # L2 0.6, but the box's rule says no
    res = run_episode(env, act=lambda obs, info: np.zeros(2), max_steps=5)
    assert not res.success and res.steps == 5 and len(res.states) == 6


def test_evaluation_takes_the_rules_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))
    registry.register("box", Box)
    report, results = evaluate(None, "box", episodes=3, seed=0, cfg=PlanConfig(max_steps=15), progress=False)
    assert report["success"] == "box: every coordinate within 0.5 of the goal"
    assert report["success_radius"] is None and report["success_parameters"] == {}
    assert set(results) == {"random"}  # no world model; no true dynamics: no perfect-model agent
    for r in results["random"]:
        assert r.states.shape[1] == 3 and r.success == Box().is_success(r.states[-1], r.goal)
    # Two Rooms reports its radius, from the environment's config.
    report, _ = evaluate(None, "two-rooms", episodes=1, seed=0, cfg=PlanConfig(max_steps=3), agents=("random",),
                         env_kwargs={"success_radius": 6.0}, progress=False)
    assert report["success"] == "agent within 6.0 px of the goal" and report["success_radius"] == 6.0


def test_write_outputs_draws_with_the_environment(tmp_path: Path) -> None:
    env = TwoRooms()
    env.reset(seed=0, options={"state": (10.0, 10.0), "goal": (20.0, 12.0)})
    res = run_episode(env, act=lambda obs, info: np.array([2.0, 0.5]), max_steps=8, keep_frames=True)
    assert isinstance(res, EpisodeResult) and res.success and len(res.frames) == res.steps + 1
    report = {"env": "two-rooms", "world_model": summarise([res])}
    paths = write_outputs(tmp_path, report, {"world_model": [res]}, "two-rooms")
    assert json.loads(paths["json"].read_text())["env"] == "two-rooms"
    from PIL import Image

    gif = Image.open(paths["gif"])
    assert gif.size == (192, 192)  # Two Rooms marks the goal on the frame itself (square)
    assert paths["png"].stat().st_size > 0
