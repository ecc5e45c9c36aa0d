"""CEM / MPPI on known analytic models, action bounds, energies, and the MPC loop on Two Rooms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jepa.envs import TwoRooms
from jepa.planning import CEM, MPPI, latent_energy, make_planner
from jepa.planning.evaluate import episode_starts, random_policy, summarise
from jepa.planning.mpc import TrueDynamicsCost, repeat_actions, run_episode


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
        results.append(run_episode(env, act=random_policy(env, i), max_steps=20))
    s = summarise(results)
    assert s["episodes"] == 6 and 0.0 <= s["success_rate"] <= 1.0
    assert s["replan_seconds_median"] is None  # a policy does not replan
    assert all(len(r.states) == r.steps + 1 for r in results)
