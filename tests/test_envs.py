"""Two Rooms physics, rendering and episode API."""

from __future__ import annotations

import numpy as np
import pytest

from jepa.envs import Layout, TwoRooms, TwoRoomsConfig, clip_actions, dynamics


def walk(env: TwoRooms, action: tuple[float, float], steps: int) -> np.ndarray:
    for _ in range(steps):
        env.step(np.array(action))
    return env.state


def test_action_norm_is_capped() -> None:
    a = clip_actions(np.array([[30.0, 40.0], [0.3, 0.4]]), 2.5)
    np.testing.assert_allclose(np.linalg.norm(a, axis=-1), [2.5, 0.5])
    np.testing.assert_allclose(a[0] / np.linalg.norm(a[0]), [0.6, 0.8])  # direction kept
    env = TwoRooms()
    env.reset(seed=0, options={"state": (10.0, 10.0)})
    env.step(np.array([100.0, 0.0]))
    assert env.state[0] == pytest.approx(12.5)
    assert env.state[1] == pytest.approx(10.0)


def test_wall_blocks_outside_the_door() -> None:
    env = TwoRooms()
    lay = env.layout
    env.reset(seed=0, options={"state": (20.0, 10.0)})  # left room, well above the door
    walk(env, (2.5, 0.0), 40)
    assert env.state[0] <= lay.wall_lo + 1e-9  # stopped at the wall's face
    assert env.state[0] > lay.wall_lo - 2.5  # ... and reached it
    assert env.layout.room(env.state) == 0
    # From the right room, pushing left and down-left: still blocked, slides along the wall.
    env.reset(options={"state": (50.0, 55.0)})
    walk(env, (-2.0, 0.5), 60)
    assert env.state[0] >= lay.wall_hi - 1e-9
    assert env.state[1] > 55.0  # slid down along the wall
    assert env.layout.room(env.state) == 1


def test_door_lets_the_agent_through() -> None:
    env = TwoRooms()
    env.reset(seed=0, options={"state": (10.0, env.layout.door_y)})
    walk(env, (2.5, 0.0), 30)
    assert env.state[0] > env.layout.wall_hi + 10
    assert env.layout.room(env.state) == 1


def test_a_long_step_cannot_tunnel_through_a_thin_wall() -> None:
    cfg = TwoRoomsConfig(wall_width=1.0, max_action_norm=2.5, substeps=4)
    lay = Layout(cfg.wall_x, cfg.door_y, cfg.wall_width, cfg.door_size)
    starts = np.stack([np.linspace(cfg.wall_x - 3, cfg.wall_x - 0.6, 50), np.full(50, 5.0)], axis=-1)
    out = dynamics(starts, np.array([2.5, 0.0]), lay, cfg)
    assert np.all(out[:, 0] <= lay.wall_lo + 1e-9)
    with pytest.raises(ValueError, match="jump the wall"):
        TwoRoomsConfig(wall_width=0.5, substeps=1)


def test_border_clamps_and_batched_dynamics_match_step() -> None:
    env = TwoRooms()
    env.reset(seed=0, options={"state": (1.0, 1.0)})
    env.step(np.array([-2.0, -2.0]))
    np.testing.assert_allclose(env.state, [0.0, 0.0])
    rng = np.random.default_rng(0)
    states = np.stack([env.sample_free_state() for _ in range(64)])
    actions = rng.normal(0, 2, size=(64, 2))
    batched = env.dynamics(states, actions)
    for s, a, b in zip(states, actions, batched, strict=True):
        env.reset(options={"state": s})
        env.step(a)
        np.testing.assert_allclose(env.state, b)
    assert not env.layout.blocked(batched).any()


def test_render_shows_the_agent_where_it_is() -> None:
    env = TwoRooms()
    for xy in [(10.0, 12.0), (50.3, 40.7)]:
        obs, _ = env.reset(seed=0, options={"state": xy})
        assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
        red = obs[..., 0].astype(float) - obs[..., 2].astype(float)
        w = np.clip(red - 30, 0, None)
        rows, cols = np.mgrid[0:64, 0:64]
        s = 64 / 65
        cx = ((cols + 0.5) / s - 0.5)[w > 0] @ w[w > 0] / w.sum()
        cy = ((rows + 0.5) / s - 0.5)[w > 0] @ w[w > 0] / w.sum()
        assert abs(cx - xy[0]) < 0.5 and abs(cy - xy[1]) < 0.5
    # The wall is drawn, with a gap at the door.
    col = int(round((env.layout.wall_x + 0.5) * 64 / 65 - 0.5))
    assert obs[2, col].mean() > 100 and obs[int(env.layout.door_y), col].mean() < 60


def test_reset_is_seeded_and_layouts_randomise() -> None:
    env = TwoRooms.make(random_wall=True, random_door=True)
    a, ia = env.reset(seed=3)
    b, ib = env.reset(seed=3)
    np.testing.assert_array_equal(a, b)
    assert ia["layout"] == ib["layout"]
    walls = {round(env.reset(seed=s)[1]["layout"]["wall_x"], 3) for s in range(10)}
    assert len(walls) == 10
    with pytest.raises(ValueError, match="inside the wall"):
        TwoRooms().reset(options={"state": (32.0, 5.0)})


def test_goal_success_and_other_room_goals() -> None:
    env = TwoRooms()
    env.reset(seed=0, options={"state": (10.0, 32.0), "goal": (14.0, 32.0)})
    _, reward, terminated, truncated, info = env.step(np.array([0.0, 0.0]))
    assert info["success"] and terminated and reward == 1.0 and not truncated
    env.reset(seed=1, options={"state": (10.0, 32.0), "goal": (15.0, 32.0)})
    _, reward, terminated, _, info = env.step(np.array([0.0, 0.0]))
    assert not info["success"] and reward == 0.0
    for s in range(20):
        env.reset(seed=s)
        g = env.sample_goal(other_room=True)
        assert env.layout.room(g) != env.layout.room(env.state)
    env = TwoRooms.make(max_steps=3)
    env.reset(seed=0)
    assert [env.step(np.zeros(2))[3] for _ in range(3)] == [False, False, True]


def test_random_walk_policy_bounces_off_walls_and_is_seeded() -> None:
    from jepa.envs.collect import RandomWalkPolicy

    env = TwoRooms()
    frames, actions, states = RandomWalkPolicy(momentum=0.95, noise=0.2).rollout(env, 200, np.random.default_rng(0))
    assert frames.shape == (201, 64, 64, 3) and actions.shape == (200, 2) and states.shape == (201, 2)
    assert np.linalg.norm(actions, axis=-1).max() <= env.config.max_action_norm + 1e-6
    at_border = np.mean((states < 0.5) | (states > env.config.size - 1.5), axis=0).max()
    sticky = RandomWalkPolicy(momentum=0.95, noise=0.2, bounce=False).rollout(env, 200, np.random.default_rng(0))[2]
    assert at_border < np.mean((sticky < 0.5) | (sticky > env.config.size - 1.5), axis=0).max()
    again = RandomWalkPolicy(momentum=0.95, noise=0.2).rollout(env, 200, np.random.default_rng(0))
    np.testing.assert_array_equal(again[1], actions)
