"""Two Rooms physics, rendering and episode API; the environment registry; the random-walk policy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jepa.envs import Layout, TwoRooms, TwoRoomsConfig, clip_actions, dynamics, registry
from jepa.envs.base import Env
from jepa.envs.policies import RandomWalkPolicy
from jepa.envs.registry import env_names, make_env, register

ROOT = Path(__file__).resolve().parents[1]


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
    env = TwoRooms()
    frames, actions, states = RandomWalkPolicy(momentum=0.95, noise=0.2).rollout(env, 200, np.random.default_rng(0))
    assert frames.shape == (201, 64, 64, 3) and actions.shape == (200, 2) and states.shape == (201, 2)
    assert np.linalg.norm(actions, axis=-1).max() <= env.config.max_action_norm + 1e-6
    at_border = np.mean((states < 0.5) | (states > env.config.size - 1.5), axis=0).max()
    sticky = RandomWalkPolicy(momentum=0.95, noise=0.2, bounce=False).rollout(env, 200, np.random.default_rng(0))[2]
    assert at_border < np.mean((sticky < 0.5) | (sticky > env.config.size - 1.5), axis=0).max()
    again = RandomWalkPolicy(momentum=0.95, noise=0.2).rollout(env, 200, np.random.default_rng(0))
    np.testing.assert_array_equal(again[1], actions)


# -- registry -------------------------------------------------------------------------------------


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_registry_lists_both_environments_without_importing_gym_pusht() -> None:
    proc = run_python(
        "import sys\n"
        "from jepa.envs import env_names\n"
        "from jepa.training.cli import build_parser\n"
        "names = env_names()\n"
        "build_parser()\n"
        "print(names, 'gym_pusht' in sys.modules, 'jepa.envs.pusht' in sys.modules)\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["['pusht',", "'two-rooms']", "False", "False"]


def test_cli_environment_choices_come_from_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    from jepa.training.cli import build_parser

    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))
    register("toy-rooms", TwoRooms.make)
    parser = build_parser()
    assert parser.parse_args(["data", "collect", "toy-rooms", "--out", "x"]).env == "toy-rooms"
    assert parser.parse_args(["plan", "--env", "toy-rooms"]).env == "toy-rooms"
    with pytest.raises(SystemExit):
        parser.parse_args(["plan", "--env", "no-such-env"])


def test_unknown_environment_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"unknown environment 'two_rooms'; known environments: pusht, two-rooms"):
        make_env("two_rooms")


def test_pusht_without_gym_pusht_says_how_to_install() -> None:
    proc = run_python(
        "import sys\n"
        "sys.modules['gym_pusht'] = None  # as if not installed\n"
        "from jepa.envs import make_env\n"
        "try:\n"
        "    make_env('pusht')\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'jepa[envs]'" in proc.stdout


def test_register_callables_and_lazy_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))
    register("small-rooms", lambda **kw: TwoRooms.make(size=33, wall_x=16.0, door_y=16.0, **kw))
    register("lazy-rooms", "jepa.envs.two_rooms:TwoRooms")  # a class with make(**overrides)
    assert {"small-rooms", "lazy-rooms"} <= set(env_names())
    small = make_env("small-rooms", success_radius=2.0)
    assert small.config.size == 33 and small.config.success_radius == 2.0
    lazy = make_env("lazy-rooms", max_steps=7)
    assert isinstance(lazy, TwoRooms) and isinstance(lazy, Env) and lazy.config.max_steps == 7
    with pytest.raises(ValueError, match="module:attribute"):
        register("bad", "jepa.envs.two_rooms.TwoRooms")
    with pytest.raises(TypeError):  # an unknown option reaches the config and fails there
        make_env("two-rooms", no_such_option=1)


def test_an_environment_from_outside_the_repository_is_registered_by_jepa_envs(tmp_path: Path) -> None:
    """A user's own environment, named in JEPA_ENVS (or a package's ``jepa.envs`` entry point),
    works with jepa data collect without editing this repository; a malformed pair is one line."""
    (tmp_path / "my_envs.py").write_text(
        "from jepa.envs.two_rooms import TwoRooms\n\n\nclass Corridor(TwoRooms):\n    name = 'corridor'\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "JEPA_ENVS": "corridor=my_envs:Corridor"}
    jepa = [sys.executable, "-m", "jepa.training.cli"]
    out = tmp_path / "data"
    r = subprocess.run([*jepa, "data", "collect", "corridor", "--episodes", "2", "--steps", "12", "--out", str(out),
                        "--workers", "1"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (out / "manifest.csv").is_file() and len(list((out / "episodes").glob("*.npz"))) == 2
    r = subprocess.run([*jepa, "data", "collect", "--help"], capture_output=True, text=True, cwd=tmp_path,
                       env={**env, "JEPA_ENVS": "corridor"})
    assert r.returncode == 2 and r.stderr.strip() == "jepa: error: JEPA_ENVS: 'corridor' is not name=module:attribute"
    assert registry.load_plugins("a=x:y, b = z:w") == ["a", "b"] and {"a", "b"} <= set(registry._FACTORIES)
    for name in ("a", "b"):
        registry._FACTORIES.pop(name)


# -- the environment's own rules ------------------------------------------------------------------


def test_two_rooms_success_rule_agrees_with_the_distance_test() -> None:
    env = TwoRooms.make(success_radius=4.5)
    env.reset(seed=0, options={"state": (10.0, 10.0), "goal": (20.0, 30.0)})
    goal = np.array([20.0, 30.0])
    states = [goal, goal + [4.4, 0.0], goal + [0.0, -4.5], goal + [3.2, 3.2], goal + [3.18, 3.18], goal + [4.6, 0.0],
              np.array([10.0, 10.0])]
    old = [float(np.linalg.norm(s - goal)) <= 4.5 for s in states]  # the rule evaluate used to assume
    assert old == [True, True, True, False, True, False, False]
    assert [env.is_success(s, goal) for s in states] == old
    assert [env.is_success(s) for s in states] == old  # the goal set by reset
    assert env.is_success() is False  # the current state (10, 10)
    assert env.is_success(goal, None) is True
    assert TwoRooms().is_success(np.zeros(2)) is False  # no goal: never a success
    assert env.success_rule() == "agent within 4.5 px of the goal"
    wide = TwoRooms.make(success_radius=5.0)
    assert wide.is_success(goal + [4.6, 0.0], goal) and wide.success_rule() == "agent within 5.0 px of the goal"
    assert env.has_true_dynamics and env.max_action_norm == 2.5 and env.name == "two-rooms"
    assert env.room(np.array([5.0, 5.0])) == 0 and env.room(np.array([60.0, 5.0])) == 1


def test_two_rooms_goal_picture_rings_the_goal() -> None:
    env = TwoRooms()
    frame, _ = env.reset(seed=0, options={"state": (10.0, 10.0)})
    pic = env.goal_picture(frame, np.array([40.0, 40.0]))
    assert pic.shape == frame.shape and not np.shares_memory(pic, frame)
    ring = np.all(pic == (40, 220, 60), axis=-1)
    ys, xs = np.nonzero(ring)
    s = 64 / 65
    cx, cy = (40.0 + 0.5) * s - 0.5, (40.0 + 0.5) * s - 0.5
    r = np.hypot(xs - cx, ys - cy)
    assert ring.sum() > 10 and np.all(np.abs(r - 4.5 * s) < 0.7)
    np.testing.assert_array_equal(pic[~ring], frame[~ring])


def test_episode_options_rebuild_the_episode() -> None:
    env = TwoRooms.make(random_wall=True, random_door=True)
    env.reset(seed=4)
    env.sample_goal(other_room=True)
    opts = env.episode_options()
    obs, goal_img = env.render(), env.render_goal()
    other = TwoRooms.make(random_wall=True, random_door=True)
    obs2, info = other.reset(seed=99, options=opts)
    np.testing.assert_array_equal(obs2, obs)
    np.testing.assert_array_equal(other.render_goal(), goal_img)
    assert info["layout"] == vars(env.layout)
    arrays = env.episode_arrays()
    assert sorted(arrays) == ["layout_border", "layout_door_size", "layout_door_y", "layout_size", "layout_wall_width",
                              "layout_wall_x"]
    assert arrays["layout_wall_x"] == np.float32(env.layout.wall_x)


# -- the random-walk policy -----------------------------------------------------------------------


def test_collect_writes_the_same_actions_as_before(tmp_path: Path) -> None:
    """Values recorded from the pre-registry collection code (two-rooms, seed 0, episode 0, 40 steps)."""
    from jepa.envs.collect import collect

    collect("two-rooms", tmp_path, episodes=1, steps=40, seed=0, workers=1)
    z = np.load(tmp_path / "episodes" / "000000.npz")
    want_first = [[-0.04371785372495651, 0.18480610847473145], [0.32224899530410767, 1.4703255891799927],
                  [1.2371050119400024, 0.6195577383041382]]
    np.testing.assert_array_equal(z["actions"][:3], np.array(want_first, np.float32))
    np.testing.assert_array_equal(z["actions"][-1], np.array([0.315571129322052, 0.6844214797019958], np.float32))
    np.testing.assert_array_equal(z["states"][-1], np.array([14.45486068725586, 37.38884735107422], np.float32))
    assert z["actions"].shape == (40, 2) and float(z["layout_wall_x"]) == 32.0


def test_collect_module_reexports_the_policy_and_the_registry() -> None:
    from jepa.envs import collect as collect_module
    from jepa.envs import policies

    assert collect_module.RandomWalkPolicy is policies.RandomWalkPolicy
    assert collect_module.make_env is registry.make_env
    assert not hasattr(collect_module, "ENVS") and not hasattr(collect_module, "register_env")


def test_online_walk_takes_the_rollouts_actions() -> None:
    policy = RandomWalkPolicy(momentum=0.95, noise=0.3)
    env = TwoRooms()
    env.reset(seed=1)
    start = env.state.copy()
    _, actions, states = policy.rollout(env, 60, np.random.default_rng(7), reset=False)
    env.reset(options={"state": start})
    act = policy.actor(env, np.random.default_rng(7))
    obs, info = env.render(), env.info()
    online = []
    for _ in range(60):
        a = act(obs, info)
        online.append(a)
        obs, _, _, _, info = env.step(a)
    np.testing.assert_array_equal(np.array(online, np.float32), actions)
    np.testing.assert_array_equal(np.float32(env.state), states[-1])
