"""End to end (slow): collect -> jepa fit (world-model recipe, shortened) -> jepa plan and
jepa inspect --world-model, via the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jepa.training.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("env", ["two-rooms", "pusht"])
def test_collect_fit_plan(env: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    if env == "pusht":
        pytest.importorskip("gym_pusht", reason="the [envs] extra (gym-pusht) is not installed")
    config = {"two-rooms": "two_rooms.yaml", "pusht": "pusht.yaml"}[env]
    data, run, out = tmp_path / "tr", tmp_path / "run", tmp_path / "plan"
    protocol = {"two-rooms": "eb-jepa", "pusht": "swm"}[env]  # the headline protocols
    assert main(["data", "collect", env, "--episodes", "12", "--steps", "40", "--out", str(data),
                 "--workers", "1", "--protocol", protocol]) == 0
    assert (data / "train.csv").is_file() and (data / "val.csv").is_file()
    assert main([
        "fit", "--config", str(ROOT / "configs/world_model" / config),
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "6", "--trainer.limit_val_batches", "2",
        "--trainer.default_root_dir", str(run), "--trainer.logger", "false",
        "--data.init_args.train", str(data / "train.csv"), "--data.init_args.val", str(data / "val.csv"),
        "--data.init_args.batch_size", "16",
    ]) == 0
    ckpt = run / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    capsys.readouterr()
    assert main(["plan", "--world-model", str(run), "--env", env, "--episodes", "2", "--seed", "5",
                 "--horizon", "4", "--samples", "32", "--iterations", "2", "--max-steps", "20",
                 "--gif-episodes", "1", "--out", str(out), "--quiet",
                 *(["--trajectories", str(data / "val.csv")] if env == "pusht" else [])]) == 0
    table = capsys.readouterr().out
    # Both have the perfect-model ceiling: Two Rooms through batched dynamics, Push-T through its simulator.
    agents = ("world_model", "perfect_model", "random")
    for agent in agents:
        assert f"| {agent} |" in table
    assert "perfect-model check is skipped" not in table
    report = json.loads((out / "plan.json").read_text())
    for key in ("success_rate", "episodes", "mean_steps_to_success", "replan_seconds_median", "replan_seconds_p95"):
        assert key in report
    assert report["env"] == env
    # The protocol is named and recorded with every parameter, and the shortened run says it was changed.
    assert report["protocol"]["name"] == protocol and report["protocol_name"] == f"{protocol} (modified)"
    assert report["protocol"]["modified"] == {"episodes": 2, "max_steps": 20}
    assert f"Protocol `{protocol} (modified)`" in table
    for agent in agents:
        assert report[agent]["episodes"] == 2
        assert 0.0 <= report[agent]["success_rate"] <= 1.0
    assert report["planner"]["frameskip"] == 5  # read from the trained model
    assert report["replan_seconds_median"] > 0
    assert (out / "plan.gif").stat().st_size > 0 and (out / "trajectories.png").stat().st_size > 0
    if env == "two-rooms":  # the world model's latents, named by the recorded states
        capsys.readouterr()
        insp = tmp_path / "inspect"
        assert main(["inspect", "--world-model", str(ckpt), "--data", str(data / "manifest.csv"), "--atoms", "8",
                     "--active", "2", "--steps", "100", "--show", "2", "--frame-stride", "5",
                     "--out", str(insp)]) == 0
        printed = capsys.readouterr().out
        assert "| pretrained |" in printed and "| agent_x |" in printed
        result = json.loads((insp / "inspect.json").read_text())
        readout = result["state_readout"]
        assert {"agent_x", "agent_y", "layout_wall_x", "layout_door_y"} <= set(readout["pretrained"])
        assert set(readout["random_init"]) == set(readout["pretrained"])
        assert result["unit"] == "frames" and result["split_by"] == "episode" and result["episodes"] == 12
        assert {"room", "door_side", "wall_distance"} <= set(result["labels"])
        assert result["clips"] == 12 * 9 and result["pretrained"]["atoms"] == 8 and "random_init" in result
        assert len(list((insp / "atoms").glob("atom_*.png"))) == 2
        page = (insp / "inspect.html").read_text()
        assert "frames of" in page and 'id="readout"' in page
