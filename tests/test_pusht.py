"""Push-T through gym-pusht: DINO-WM success criterion, relative actions, starts, goals, data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from jepa.envs.pusht import angle_difference, pusht_success

pytest.importorskip("gym_pusht", reason="the [envs] extra (gym-pusht) is not installed")

from jepa.envs.collect import collect  # noqa: E402
from jepa.envs.policies import RandomWalkPolicy  # noqa: E402
from jepa.envs.pusht import PushT  # noqa: E402
from jepa.envs.registry import make_env  # noqa: E402


def reference_success(state: list[float], goal: list[float]) -> bool:
    """DINO-WM's Push-T test, written out: 4-D (agent, block) xy distance < 20, angle < pi / 9 on the circle."""
    pos = math.sqrt(sum((state[i] - goal[i]) ** 2 for i in range(4)))
    d = abs(state[4] - goal[4]) % (2 * math.pi)
    return pos < 20 and min(d, 2 * math.pi - d) < math.pi / 9


GOAL = [200.0, 200.0, 300.0, 300.0, 0.05]
CASES = [
    [200.0, 200.0, 300.0, 300.0, 0.05],  # exact
    [210.0, 210.0, 305.0, 300.0, 0.2],  # inside both tolerances
    [214.0, 200.0, 314.0, 300.0, 0.05],  # 4-D distance 19.8: in, though each part is < 20
    [215.0, 200.0, 315.0, 300.0, 0.05],  # 4-D distance 21.2: out
    [200.0, 200.0, 300.0, 300.0, 0.05 + math.pi / 9 + 0.01],  # angle just out
    [200.0, 200.0, 300.0, 300.0, 2 * math.pi - 0.2],  # wraps around: 0.25 rad apart -> in
    [200.0, 200.0, 300.0, 300.0, math.pi],  # opposite
    [200.0, 240.0, 300.0, 300.0, 0.05],  # agent far, block exact: out
]


def test_success_criterion_matches_the_reference() -> None:
    goal, cases = GOAL, CASES
    got = pusht_success(np.array(cases), np.array(goal))
    want = [reference_success(c, goal) for c in cases]
    assert got.tolist() == want
    assert want == [True, True, True, False, False, True, False, False]
    assert angle_difference(0.1, 2 * math.pi - 0.1) == pytest.approx(0.2)


def test_relative_actions_are_capped_and_move_the_agent() -> None:
    env = PushT.make(max_action=40.0)
    start = np.array([150.0, 250.0, 400.0, 400.0, 0.0])
    env.reset(options={"state": start})
    for _ in range(8):
        _, _, _, _, info = env.step(np.array([1000.0, 0.0]))  # capped to +40 in x
    moved = info["state"][:2] - start[:2]
    assert moved[0] > 40 and abs(moved[1]) < 1e-6  # moved right only
    assert moved[0] < 8 * 40  # never more than the cap per step
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan, 0.0]))


def test_the_agent_pushes_the_block_and_the_edge_is_reported() -> None:
    env = PushT.make()
    # The T's bar spans x in [-60, 60] and y in [0, 30] around the block's position (angle 0):
    # an agent below the bar moving up pushes it.
    env.reset(options={"state": np.array([256.0, 200.0, 256.0, 300.0, 0.0])})
    for _ in range(12):
        _, _, _, _, info = env.step(np.array([0.0, 40.0]))
    assert info["state"][3] > 300 + 5  # the block was pushed along +y
    env.reset(options={"state": np.array([500.0, 256.0, 200.0, 200.0, 0.0])})
    _, _, _, _, info = env.step(np.array([40.0, 0.0]))
    assert info["blocked"].tolist() == [True, False]


def test_starts_are_seeded_off_the_block_and_render() -> None:
    env = PushT.make()
    obs_a, info_a = env.reset(seed=3)
    obs_b, info_b = env.reset(seed=3)
    np.testing.assert_array_equal(info_a["state"], info_b["state"])
    np.testing.assert_array_equal(obs_a, obs_b)
    assert obs_a.shape == (64, 64, 3) and obs_a.dtype == np.uint8
    d = np.linalg.norm(info_a["state"][:2] - info_a["state"][2:4])
    assert 30 <= d <= 160
    _, info_c = env.reset(seed=4)
    assert not np.allclose(info_a["state"], info_c["state"])


def test_goals_move_the_block_are_unsolved_and_render() -> None:
    env = PushT.make()
    for seed in range(4):
        env.reset(seed=seed)
        start = env.state
        goal = env.sample_goal()
        np.testing.assert_allclose(env.state, start, atol=1e-6)  # the walk does not move the episode's start
        assert not pusht_success(start, goal)
        info = env._info()
        assert info["success"] is False and info["distance"] > 0
        img = env.render_goal()
        assert img.shape == (64, 64, 3) and not np.array_equal(img, env.render())
    env.reset(options={"state": goal, "goal": goal})
    assert env._info()["success"] is True


def test_collect_pusht_writes_aligned_trajectories(tmp_path: Path) -> None:
    from data_pipelines.trajectories import TrajectoryClipDataset

    manifest = collect("pusht", tmp_path, episodes=3, steps=12, seed=0, workers=1, val_fraction=0.34)
    z = np.load(tmp_path / "episodes" / "000000.npz")
    assert z["actions"].shape == (12, 2) and z["states"].shape == (13, 5)
    assert np.all(np.abs(z["actions"]) <= 40.0 + 1e-5)
    ds = TrajectoryClipDataset(str(manifest), num_frames=4, frameskip=1)
    sample = ds[0]
    assert tuple(sample["actions"].shape) == (3, 2) and sample["video"].shape[0] == 4


def test_random_walk_continues_without_reset() -> None:
    env = make_env("pusht")
    env.reset(seed=0)
    start = env.state
    frames, actions, states = RandomWalkPolicy().rollout(env, 5, np.random.default_rng(0), reset=False)
    np.testing.assert_allclose(states[0], start, atol=1e-6)
    assert frames.shape[0] == 6 and actions.shape == (5, 2)


def test_env_success_rule_agrees_with_the_dino_wm_test() -> None:
    env = make_env("pusht")
    assert isinstance(env, PushT) and env.name == "pusht" and not env.has_true_dynamics
    env.reset(options={"state": np.array(CASES[1]), "goal": np.array(GOAL)})
    want = [reference_success(c, GOAL) for c in CASES]
    assert [env.is_success(np.array(c), np.array(GOAL)) for c in CASES] == want
    assert [env.is_success(np.array(c)) for c in CASES] == want  # against the goal set by reset
    assert env.is_success() is True  # the current state, CASES[1]
    assert env.success_rule() == "DINO-WM: ||(agent, block) xy - goal|| < 20 and block angle within 0.3491 rad"
    loose = PushT.make(position_tolerance=25.0)  # 4-D distance 21.2: in with a 25-unit tolerance
    assert loose.is_success(np.array(CASES[3]), np.array(GOAL)) and "< 25 and" in loose.success_rule()
    assert loose.success_parameters() == {"position_tolerance": 25.0, "angle_tolerance": math.pi / 9}


def test_goal_picture_and_paths_show_the_block() -> None:
    env = PushT.make()
    frame, _ = env.reset(seed=0)
    goal = env.sample_goal()
    pic = env.goal_picture(frame, goal)
    assert pic.shape == (64, 64 + 2 + 64, 3)
    np.testing.assert_array_equal(pic[:, :64], frame)
    np.testing.assert_array_equal(pic[:, 66:], env.render_goal())
    np.testing.assert_array_equal(env.path_coordinates(np.array([CASES[1], GOAL])), [[305.0, 300.0], [300.0, 300.0]])
    assert env.path_subject == "block" and env.plot_extent() == (0.0, 512.0)
    assert env.episode_arrays() == {} and env.room(goal) == 0


def test_simulate_replays_from_the_full_physics_state_and_restores_it() -> None:
    env = PushT()
    env.reset(seed=3)
    env.sample_goal()
    rng = np.random.default_rng(0)
    for _ in range(4):  # moving, so velocities matter
        env.step(rng.uniform(-40, 40, 2))
    full, steps, goal = env.physics_state(), env.steps, env.goal.copy()
    assert np.linalg.norm(full[5:7]) > 1  # the agent is moving
    actions = rng.uniform(-40, 40, (3, 12, 2))
    sim = env.simulate(actions)
    np.testing.assert_array_equal(env.physics_state(), full)  # restored, velocities included
    assert env.steps == steps and np.array_equal(env.goal, goal)
    for k in range(3):  # each sequence = stepping the environment for real from that state
        env._set_physics(full)
        real = np.stack([env.step(a)[4]["state"] for a in actions[k]])
        np.testing.assert_allclose(sim[k], real, atol=1e-6)
    assert np.ptp(sim[:, -1, 0]) > 1  # different actions, different outcomes


def test_goal_distance_weighs_both_tolerances_alike() -> None:
    env = PushT()
    goal = np.array(GOAL)
    at_position_tolerance = goal + np.array([20.0, 0, 0, 0, 0])
    at_angle_tolerance = goal + np.array([0, 0, 0, 0, math.pi / 9])
    np.testing.assert_allclose(env.goal_distance(np.stack([at_position_tolerance, at_angle_tolerance]), goal), [20.0, 20.0])


def test_oracle_planner_solves_pusht_goals_on_the_simulator() -> None:
    """The same planner as the world model's, on the true simulator (``TrueDynamicsCost`` over
    ``simulate``), with a small budget: it reaches goals a random walk does not."""
    from jepa.planning.mpc import TrueDynamicsCost, run_episode
    from jepa.planning.samplers import make_planner

    env = PushT()
    oracle = random = 0
    for i in range(4):
        env.reset(seed=100 + i)
        env.sample_goal()
        setting = env.episode_options()
        planner = make_planner("mppi", horizon=3, action_dim=2, samples=32, iterations=3, action_low=[-40, -40],
                               action_high=[40, 40], max_norm=None, init_std=None, seed=i, device="cpu",
                               temperature=0.1)
        res = run_episode(env, planner=planner, cost=TrueDynamicsCost(env, env.goal, 5, "sum"), max_steps=50,
                          frameskip=5, until="success")
        oracle += res.success
        env.reset(options=setting)
        walk = run_episode(env, act=RandomWalkPolicy().actor(env, np.random.default_rng(i)), max_steps=50)
        random += walk.success
    assert oracle >= 2 and oracle > random, (oracle, random)


def test_push_policy_moves_the_block_in_most_episodes(tmp_path: Path) -> None:
    """The contact-rich collector: the block moves in most episodes, far more than under the random walk."""
    from jepa.envs.policies import PushPolicy
    from jepa.training.cli import main

    assert main(["data", "collect", "pusht", "--policy", "push", "--episodes", "8", "--steps", "60",
                 "--out", str(tmp_path / "push"), "--workers", "1"]) == 0
    assert main(["data", "collect", "pusht", "--episodes", "8", "--steps", "60",
                 "--out", str(tmp_path / "walk"), "--workers", "1"]) == 0

    def block_paths(folder: Path) -> np.ndarray:
        paths = []
        for f in sorted((folder / "episodes").glob("*.npz")):
            s = np.load(f)["states"]
            paths.append(np.linalg.norm(np.diff(s[:, 2:4], axis=0), axis=1).sum())
        return np.array(paths)

    push, walk = block_paths(tmp_path / "push"), block_paths(tmp_path / "walk")
    assert len(push) == 8 and (push > 10).mean() >= 0.75
    assert np.median(push) > 5 * max(np.median(walk), 1.0)
    with pytest.raises(ValueError, match="object to push"):
        from jepa.envs.two_rooms import TwoRooms

        PushPolicy().actor(TwoRooms(), np.random.default_rng(0))
    with pytest.raises(ValueError, match="random_fraction"):
        PushPolicy(random_fraction=1.5)
