"""Named evaluation protocols: EB-JEPA's Two Rooms geometry and episode draw, the full-budget
final-state rule, no degenerate episodes, Wilson intervals, and the protocol in the report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from jepa.envs import TwoRooms
from jepa.envs.two_rooms import EB_JEPA_LAYOUT, TwoRoomsConfig
from jepa.planning.evaluate import PlanConfig, episode_starts, evaluate, write_outputs
from jepa.planning.mpc import run_episode
from jepa.planning.protocols import PROTOCOLS, get_protocol, wilson_interval
from jepa.training.cli import main


def wilson_reference(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson (1927): (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)."""
    p = k / n
    centre = p + z**2 / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return (centre - spread) / (1 + z**2 / n), (centre + spread) / (1 + z**2 / n)


@pytest.mark.parametrize(("k", "n"), [(0, 20), (10, 20), (19, 20), (20, 20), (47, 50), (1, 3)])
def test_wilson_interval_matches_the_formula(k: int, n: int) -> None:
    lo, hi = wilson_interval(k, n)
    ref = wilson_reference(k, n)
    assert lo == pytest.approx(max(ref[0], 0.0), abs=1e-4) and hi == pytest.approx(min(ref[1], 1.0), abs=1e-4)
    assert lo <= k / n <= hi
    assert wilson_interval(10, 20) == pytest.approx((0.2993, 0.7007), abs=1e-4)  # the textbook value


def test_eb_jepa_geometry_border_walls_and_door() -> None:
    env = TwoRooms(TwoRoomsConfig.eb_jepa())
    walls, doors = [], []
    for seed in range(40):
        env.reset(seed=seed)
        lay = env.layout
        walls.append(lay.wall_x)
        doors.append(lay.door_y)
        assert lay.door_size == 9.0 and lay.border == 4.0
    assert min(walls) >= 20 and max(walls) <= 44 and np.ptp(walls) > 12  # a new wall every episode
    assert min(doors) >= 10 and max(doors) <= 54 and np.ptp(doors) > 20
    # Border walls: pushing into a corner stops 4 px in from the edges.
    env.reset(options={"state": (10.0, 10.0), "layout": {"wall_x": 40.0, "door_y": 30.0, "wall_width": 3.0,
                                                          "door_size": 9.0, "border": 4.0}})
    for _ in range(20):
        env.step(np.array([-2.0, -2.0]))
    np.testing.assert_allclose(env.state, [4.0, 4.0])
    frame = env.render()
    assert (frame[1, 30] == frame[30, 1]).all() and frame[1, 30, 0] == 150  # drawn in the wall's grey
    assert frame[20, 20, 0] != 150  # the floor inside is not
    with pytest.raises(ValueError, match="border"):
        TwoRoomsConfig(border=20.0)


def test_eb_jepa_fixed_wall_setting() -> None:
    proto = get_protocol("eb-jepa-fixed")
    env = TwoRooms(TwoRoomsConfig(**proto.env_kwargs))
    starts = episode_starts(env, 6, seed=0, protocol=proto)
    assert {(s["layout"]["wall_x"], s["layout"]["door_y"], s["layout"]["door_size"]) for s in starts} == {(32.0, 18.0, 9.0)}
    assert proto.until == "budget" and proto.episodes == 20


def test_eb_jepa_episodes_are_opposite_rooms_and_never_won_at_the_start() -> None:
    proto = get_protocol("eb-jepa")
    env = TwoRooms(TwoRoomsConfig(**proto.env_kwargs))
    starts = episode_starts(env, 30, seed=3, protocol=proto)
    layouts = {(s["layout"]["wall_x"], s["layout"]["door_y"]) for s in starts}
    assert len(layouts) > 20  # the layout is part of every episode
    for st in starts:
        env.reset(options=st)
        assert env.room(st["state"]) != env.room(st["goal"])
        for xy in (st["state"], st["goal"]):
            assert xy.min() >= 6.6 and xy.max() <= 64 - 6.6
            assert abs(xy[0] - env.layout.wall_x) >= 4.1
        assert not env.is_success()


def test_degenerate_starts_are_redrawn() -> None:
    # A success radius so large that many drawn starts already pass: every kept one must not.
    proto = get_protocol("first-contact")
    env = TwoRooms.make(success_radius=25.0)
    starts = episode_starts(env, 20, seed=1, protocol=proto)
    for st in starts:
        assert np.linalg.norm(np.asarray(st["state"]) - np.asarray(st["goal"])) > 25.0
    # Episodes that needed no redraw are the same as without the rule (the seed alone fixes them).
    plain = episode_starts(TwoRooms(), 20, seed=1, protocol=proto)
    kept = [i for i in range(20) if np.linalg.norm(plain[i]["state"] - plain[i]["goal"]) > 25.0]
    assert kept and all(np.array_equal(starts[i]["state"], plain[i]["state"]) for i in kept)
    with pytest.raises(RuntimeError, match="success test at its start"):
        episode_starts(TwoRooms.make(success_radius=200.0), 2, seed=0, protocol=proto, max_redraws=5)


def test_full_budget_judges_the_final_state() -> None:
    env = TwoRooms()
    opts = {"state": (10.0, 10.0), "goal": (16.0, 10.0)}

    def overshoot(obs: np.ndarray, info: dict) -> np.ndarray:
        return np.array([2.0, 0.0])  # passes the goal, then keeps going

    env.reset(options=opts)
    contact = run_episode(env, act=overshoot, max_steps=10, until="success")
    assert contact.success and contact.steps == contact.first_success_step == 1
    env.reset(options=opts)
    final = run_episode(env, act=overshoot, max_steps=10, until="budget")
    assert not final.success and final.steps == 10 and final.first_success_step == 1
    env.reset(options=opts)
    stay = run_episode(env, act=lambda o, i: np.array([0.5, 0.0]) if i["state"][0] < 16 else np.zeros(2),
                       max_steps=12, until="budget")
    assert stay.success and stay.steps == 12
    with pytest.raises(ValueError, match="until"):
        run_episode(env, act=overshoot, until="forever")


def test_report_names_the_protocol_and_its_parameters(tmp_path: Path) -> None:
    report, results = evaluate(None, "two-rooms", episodes=3, seed=0, cfg=PlanConfig(max_steps=30),
                               agents=("random", "perfect_model"), progress=False, protocol="eb-jepa")
    p = report["protocol"]
    assert p["name"] == "eb-jepa" and report["protocol_name"] == "eb-jepa (modified)"
    assert p["modified"] == {"episodes": 3, "max_steps": 30}
    assert p["until"] == "budget" and p["goals"] == "other-room" and p["env_kwargs"]["door_size"] == 9.0
    assert all(r.steps == 30 for r in results["random"])  # the full budget, success or not
    lo, hi = report["random"]["success_ci95"]
    assert 0.0 <= lo <= report["random"]["success_rate"] <= hi <= 1.0
    paths = write_outputs(tmp_path, report, results, "two-rooms")
    md = paths["md"].read_text()
    assert md.startswith("Protocol `eb-jepa (modified)`") and "final state after the full budget" in md
    assert json.loads(paths["json"].read_text())["protocol"]["env_kwargs"]["wall_range"] == [20.0, 44.0]
    # Run as the protocol says, nothing is marked as changed.
    report, _ = evaluate(None, "two-rooms", seed=0, agents=("random",), progress=False, protocol="eb-jepa",
                         cfg=PlanConfig())
    assert report["protocol_name"] == "eb-jepa" and "modified" not in report["protocol"]
    assert report["episodes"] == 20 and report["max_steps"] == 200
    with pytest.raises(ValueError, match="is for the 'two-rooms' environment"):
        evaluate(None, "pusht", protocol="eb-jepa", progress=False)


def test_protocols_are_known_by_name_and_collect_uses_their_layouts(tmp_path: Path) -> None:
    assert {"eb-jepa", "first-contact"} <= set(PROTOCOLS)
    with pytest.raises(ValueError, match="unknown protocol 'nope'; known protocols: "):
        get_protocol("nope")
    assert main(["data", "collect", "two-rooms", "--protocol", "eb-jepa", "--episodes", "3", "--steps", "5",
                 "--out", str(tmp_path / "d"), "--workers", "1"]) == 0
    walls = {float(np.load(f)["layout_wall_x"]) for f in sorted((tmp_path / "d" / "episodes").glob("*.npz"))}
    door = {float(np.load(f)["layout_door_size"]) for f in (tmp_path / "d" / "episodes").glob("*.npz")}
    assert len(walls) == 3 and door == {EB_JEPA_LAYOUT["door_size"]}
    assert main(["data", "collect", "pusht", "--protocol", "eb-jepa", "--episodes", "1", "--steps", "2",
                 "--out", str(tmp_path / "p")]) == 2


def test_dataset_goals_come_from_held_out_recordings(tmp_path: Path) -> None:
    from jepa.planning.evaluate import check_held_out, dataset_starts
    from jepa.planning.protocols import Protocol

    data = tmp_path / "tr"
    assert main(["data", "collect", "two-rooms", "--protocol", "eb-jepa", "--episodes", "4", "--steps", "30",
                 "--out", str(data), "--workers", "1", "--val-fraction", "0.5"]) == 0
    for source in ("recorded", "replayed"):
        proto = Protocol(name="t", env="two-rooms", description="", goals="dataset", goal_offset=10,
                         goal_source=source, env_kwargs=dict(EB_JEPA_LAYOUT))
        env = TwoRooms(TwoRoomsConfig(**proto.env_kwargs))
        starts = dataset_starts(env, data / "manifest.csv", 12, seed=0, protocol=proto)
        again = dataset_starts(env, data / "manifest.csv", 12, seed=0, protocol=proto)
        assert all(np.array_equal(a["goal"], b["goal"]) for a, b in zip(starts, again, strict=True))
        files = sorted((data / "episodes").glob("*.npz"))
        recs = [dict(np.load(f)) for f in files]
        for st in starts:
            # The start is a recorded state; the goal is the state 10 steps later in the same recording,
            # in that recording's own layout (replaying the recorded actions lands on it too).
            hits = [(r, t) for r in recs for t in range(len(r["states"]) - 10)
                    if np.allclose(r["states"][t], st["state"]) and r["layout_wall_x"] == np.float32(st["layout"]["wall_x"])]
            assert hits, "start is not a recorded state"
            assert any(np.allclose(r["states"][t + 10], st["goal"], atol=1e-3) for r, t in hits)
            env.reset(options=st)
            assert not env.is_success()
    with pytest.raises(ValueError, match="needs 500 episodes"):
        dataset_starts(env, data / "manifest.csv", 500, seed=0, protocol=proto)
    with pytest.raises(ValueError, match="are in the world model's training manifest"):
        check_held_out(data / "manifest.csv", data / "train.csv")
    check_held_out(data / "val.csv", data / "train.csv")  # disjoint: fine
    with pytest.raises(ValueError, match="pass --trajectories"):
        evaluate(None, "pusht", protocol="swm", progress=False)


def test_swm_protocol_on_pusht(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("gym_pusht", reason="the [envs] extra (gym-pusht) is not installed")
    data = tmp_path / "pt"
    assert main(["data", "collect", "pusht", "--episodes", "2", "--steps", "40", "--out", str(data),
                 "--workers", "1", "--seed", "3"]) == 0
    capsys.readouterr()
    assert main(["plan", "--protocol", "swm", "--trajectories", str(data / "manifest.csv"), "--agents", "random",
                 "--episodes", "3", "--seed", "0", "--out", str(tmp_path / "plan"), "--quiet"]) == 0
    report = json.loads((tmp_path / "plan" / "plan.json").read_text())
    p = report["protocol"]
    assert p["name"] == "swm" and p["goal_offset"] == 25 and p["max_steps"] == 50 and p["until"] == "success"
    assert p["trajectories"] == str(data / "manifest.csv") and report["env"] == "pusht"
    assert report["random"]["episodes"] == 3


def test_dino_wm_protocol_replays_recorded_actions_and_judges_the_final_state(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("gym_pusht", reason="the [envs] extra (gym-pusht) is not installed")
    from jepa.envs import make_env
    from jepa.planning.evaluate import dataset_starts

    proto = get_protocol("dino-wm")
    assert (proto.goal_offset, proto.goal_source, proto.max_steps, proto.until, proto.episodes) == (25, "replayed", 25, "budget", 50)
    data = tmp_path / "pt"
    assert main(["data", "collect", "pusht", "--policy", "push", "--episodes", "2", "--steps", "40", "--out", str(data),
                 "--workers", "1", "--seed", "3"]) == 0
    capsys.readouterr()
    env = make_env("pusht")
    starts = dataset_starts(env, data / "manifest.csv", 4, seed=0, protocol=proto)
    recs = [dict(np.load(f)) for f in sorted((data / "episodes").glob("*.npz"))]
    for st in starts:  # the goal is where the 25 recorded actions lead from the recorded start
        (r, t), = [(r, t) for r in recs for t in range(len(r["states"]) - 25) if np.allclose(r["states"][t], st["state"])]
        replay = make_env("pusht")
        replay.reset(options={"state": np.asarray(r["states"][t], np.float64)})
        for a in r["actions"][t: t + 25]:
            replay.step(np.asarray(a, np.float64))
        np.testing.assert_allclose(replay.info()["state"], st["goal"], atol=1e-6)
        env.reset(options=st)
        assert not env.is_success()
    assert main(["plan", "--protocol", "dino-wm", "--trajectories", str(data / "manifest.csv"), "--agents", "random",
                 "--episodes", "3", "--seed", "0", "--out", str(tmp_path / "plan"), "--quiet"]) == 0
    report = json.loads((tmp_path / "plan" / "plan.json").read_text())
    assert report["protocol"]["name"] == "dino-wm" and report["protocol"]["success_judged_on"].startswith("final state")
    assert report["random"]["episodes"] == 3


def test_replanning_every_step_holds_the_goal_under_the_full_budget() -> None:
    from jepa.planning import MPPI
    from jepa.planning.mpc import TrueDynamicsCost

    env = TwoRooms()
    opts = {"state": (20.0, 20.0), "goal": (26.0, 24.0)}
    results = {}
    for every in (None, 1):
        env.reset(options=opts)
        planner = MPPI(horizon=6, samples=256, iterations=6, action_low=-2.5, action_high=2.5, max_norm=2.5, seed=0)
        results[every] = run_episode(env, planner=planner, cost=TrueDynamicsCost(env, env.goal, 5, "sum"),
                                     max_steps=30, frameskip=5, until="budget", replan_every=every)
    fine = results[1]
    assert len(fine.replan_seconds) == fine.steps == 30  # one replan per environment step
    assert len(results[None].replan_seconds) == 6  # one per planner step of 5 environment steps
    assert fine.success and fine.first_success_step is not None
