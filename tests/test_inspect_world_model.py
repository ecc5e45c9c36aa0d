"""``jepa inspect --world-model``: state labels follow the arena's geometry, held-out frames come from
held-out episodes only, and frames line up with their recorded states."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from jepa.envs.two_rooms import EB_JEPA_LAYOUT, TwoRooms
from jepa.inspect.world_model import random_encoder_twin, read_frames, split_episodes


def layout_arrays(wall_x: float, door_y: float) -> dict[str, np.ndarray]:
    env = TwoRooms.make(**EB_JEPA_LAYOUT)
    env.reset(seed=0)
    arrays = env.episode_arrays()
    arrays["layout_wall_x"], arrays["layout_door_y"] = np.float32(wall_x), np.float32(door_y)
    return arrays


def test_two_rooms_state_labels_follow_the_layout() -> None:
    env = TwoRooms.make(**EB_JEPA_LAYOUT)  # wall x drawn from [20, 44], door centre y from [10, 54], 9 px door
    arrays = layout_arrays(wall_x=40.0, door_y=20.0)  # wall faces at 38.5 and 41.5, door rows 15.5..24.5
    states = np.array([[10.0, 10.0], [37.0, 20.0], [45.0, 30.0], [60.0, 50.0], [30.0, 16.0]])
    labels = {k: v.tolist() for k, (v, _) in env.state_labels(states, arrays).items()}
    assert labels["room"] == [0, 0, 1, 1, 0]
    assert labels["door_side"] == [0, 1, 2, 2, 1]  # above the opening, level with it, below it (image rows)
    assert labels["wall_distance"] == [2, 0, 0, 2, 1]  # 28.5, 1.5, 3.5, 18.5 and 8.5 px from the nearer face
    assert labels["agent_x"] == [0, 1, 2, 2, 1] and labels["agent_y"] == [0, 0, 1, 2, 0]
    assert labels["wall_x"] == [2] * 5 and labels["door_y"] == [0] * 5  # 40 in [36, 44]; 20 in [10, 24.7)
    names = env.state_labels(states, layout_arrays(wall_x=21.0, door_y=50.0))
    assert names["wall_x"][0].tolist() == [0] * 5 and names["door_y"][0].tolist() == [2] * 5
    assert names["room"][1] == ["left", "right"] and len(names["door_side"][1]) == 3


def test_pusht_state_labels() -> None:
    pytest.importorskip("gym_pusht", reason="the [envs] extra (gym-pusht) is not installed")
    from jepa.envs.pusht import PushT

    env = PushT.make()
    states = np.array([[100.0, 400.0, 130.0, 420.0, 0.1], [400.0, 100.0, 200.0, 300.0, 3.5]])
    labels = {k: v.tolist() for k, (v, _) in env.state_labels(states, {}).items()}
    assert labels == {"agent_x": [0, 1], "agent_y": [1, 0], "block_x": [0, 0], "block_y": [1, 1],
                      "block_angle": [0, 2], "agent_near_block": [1, 0]}


def test_held_out_frames_come_from_held_out_episodes_only() -> None:
    episode = np.repeat(np.arange(10), 7)
    fit, held = split_episodes(episode, 0.3, seed=0)
    assert fit.numel() + held.numel() == 70
    assert not set(episode[fit.numpy()]) & set(episode[held.numpy()])
    assert len(set(episode[held.numpy()])) == 3
    assert not torch.equal(held, split_episodes(episode, 0.3, seed=1)[1])  # seeded
    with pytest.raises(ValueError, match="too few"):
        split_episodes(np.zeros(5, int), 0.3, seed=0)


def test_frames_and_labels_line_up_with_recorded_states(tmp_path: Path) -> None:
    from jepa.envs.collect import collect

    manifest = collect("two-rooms", tmp_path / "tr", episodes=3, steps=12, seed=0, env_kwargs=dict(EB_JEPA_LAYOUT),
                       workers=1)
    env = TwoRooms.make(**EB_JEPA_LAYOUT)
    frames, episode, labels, vocab, paths, targets = read_frames(manifest, env, frame_stride=4, max_episodes=None)
    assert frames.shape[0] == episode.shape[0] == 3 * 4  # frames 0, 4, 8, 12 of 13 per episode
    assert len(paths) == 3 and vocab["room"] == ["left", "right"]
    for e in range(3):
        with np.load(tmp_path / "tr" / "episodes" / f"{e:06d}.npz") as z:
            states = z["states"][::4]
            expected, _ = env.state_labels(states, {k: z[k] for k in z.files})["room"]
        assert labels["room"][episode == e].tolist() == expected.tolist()
        np.testing.assert_allclose(targets["agent_x"][episode == e], states[:, 0])
        np.testing.assert_allclose(targets["agent_y"][episode == e], states[:, 1])
        with np.load(tmp_path / "tr" / "episodes" / f"{e:06d}.npz") as z:
            assert set(targets["layout_wall_x"][episode == e].tolist()) == {float(z["layout_wall_x"])}
        for f, s in zip(frames[episode == e], states, strict=True):  # the agent's red disc is drawn where the state says
            red = (f[..., 0] > 180) & (f[..., 1] < 140)
            ys, xs = np.nonzero(red)
            scale = f.shape[0] / env.config.size
            assert abs(xs.mean() - s[0] * scale) < 2.5 and abs(ys.mean() - s[1] * scale) < 2.5


def test_random_twin_of_a_frame_encoder_is_fresh() -> None:
    from jepa.methods.world_model import FrameEncoder
    from jepa.models.conv import ConvEncoder

    enc = FrameEncoder(ConvEncoder(64, 16, (8, 16), 1), 64)
    twin = random_encoder_twin(enc, seed=0)
    a, b = dict(enc.named_parameters()), dict(twin.named_parameters())
    assert a.keys() == b.keys()
    weights = [k for k in a if k.endswith("weight") and a[k].dim() > 1]
    assert weights and all(not torch.equal(a[k], b[k]) for k in weights)
    again = dict(random_encoder_twin(enc, seed=0).named_parameters())
    assert all(torch.equal(b[k], again[k]) for k in b)


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from jepa.training.cli import main

    assert main(["inspect", "--encoder", "enc.pt", "--data", "x.csv", "--env", "pusht"]) != 0
    assert capsys.readouterr().err.strip() == ("jepa inspect: error: --env and --protocol go with --world-model; "
                                                      "an --encoder is inspected on a video manifest")
    bad = tmp_path / "not_a_model.ckpt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["inspect", "--world-model", str(bad), "--data", "x.csv"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err
    assert main(["inspect", "--world-model", str(bad), "--data", "x.csv", "--protocol", "nope"]) != 0
    assert "unknown protocol 'nope'" in capsys.readouterr().err
    assert main(["inspect", "--world-model", str(bad), "--data", "x.csv", "--layer", "2"]) != 0
    assert "--layer and --cache-dir go with --encoder" in capsys.readouterr().err


def test_ridge_readout_scores_held_out_rows_against_their_own_mean() -> None:
    """R^2 = 1 - SS_res / SS_tot on the held-out rows: near 1 for a linear target, <= ~0 for one
    the features know nothing about, and the constant target (nothing to explain) is left out."""
    from jepa.inspect.readout import ridge_readout, state_targets

    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 6, generator=g)
    fit, held = torch.arange(0, 300), torch.arange(300, 400)
    lin = (x @ torch.tensor([1.0, -2.0, 0.0, 0.5, 0.0, 0.0]) + 3.0).numpy()
    noise = torch.randn(400, generator=g).numpy()
    r = ridge_readout(x, {"lin": lin, "noise": noise, "const": np.ones(400)}, fit, held, alpha=1e-6)
    assert r["lin"] > 0.999 and r["noise"] < 0.05 and "const" not in r
    # held-out mean, not the fit mean: a shifted held-out target is not "explained" by the shift
    shifted = lin.copy()
    shifted[300:] += 100.0
    assert ridge_readout(x, {"s": shifted}, fit, held, alpha=1e-6)["s"] < 0
    cols = state_targets(np.array([[1.0, 2.0], [3.0, 4.0]]), {"layout_wall_x": np.float32(30), "name": np.array("x"),
                                                             "vec": np.zeros(3)}, ["agent_x", "agent_y"])
    assert sorted(cols) == ["agent_x", "agent_y", "layout_wall_x"]
    np.testing.assert_array_equal(cols["layout_wall_x"], [30.0, 30.0])
