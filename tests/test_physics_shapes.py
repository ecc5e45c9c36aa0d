"""The built-in physics-shapes dataset: seeded three-way splits, per-frame tracks true to the
decoded pixels, labels true to the tracks, and factors that can be switched off."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from data_pipelines.decoding import decode_all
from data_pipelines.physics_shapes import (
    DIRECTIONS,
    LABEL_COLUMNS,
    PAN_DIRECTIONS,
    PhysicsShapesConfig,
    make_physics_shapes,
    to_screen,
)
from data_pipelines.synth import COLORS
from data_pipelines.writers import DatasetExistsError

VIDEOS = 20
# Area of each shape for circumradius r, in units of r^2 (data_pipelines.synth.shape_mask).
AREA = {"circle": math.pi, "square": 1.6 ** 2, "triangle": 3 * math.sqrt(3) / 4, "cross": 2 * 2 * 0.7 - 0.7 ** 2}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("physics_shapes")
    make_physics_shapes(out, videos=VIDEOS, seed=3, cfg=PhysicsShapesConfig(frames=24), workers=1)
    return out


def _videos(world: Path) -> list[tuple[dict[str, str], dict, np.ndarray]]:
    out = []
    for r in _rows(world / "manifest.csv"):
        track = json.loads((world / "tracks" / (Path(r["path"]).stem + ".json")).read_text())
        out.append((r, track, decode_all(world / r["path"]).astype(np.float32)))
    return out


def test_manifests_and_three_way_split(world: Path) -> None:
    rows = _rows(world / "manifest.csv")
    assert len(rows) == VIDEOS and list(rows[0]) == ["path", *LABEL_COLUMNS]
    splits = {s: {r["path"] for r in _rows(world / f"{s}.csv")} for s in ("train", "val", "test")}
    assert len(splits["val"]) == len(splits["test"]) == round(VIDEOS * 0.1)
    assert splits["train"].isdisjoint(splits["val"]) and splits["train"].isdisjoint(splits["test"])
    assert splits["val"].isdisjoint(splits["test"])
    assert splits["train"] | splits["val"] | splits["test"] == {r["path"] for r in rows}
    with pytest.raises(DatasetExistsError, match="--overwrite"):
        make_physics_shapes(world, videos=2, seed=0, workers=1)


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    cfg = PhysicsShapesConfig(frames=8)
    a = make_physics_shapes(tmp_path / "a", videos=3, seed=7, cfg=cfg, workers=1, val_fraction=0.34, test_fraction=0.0)
    b = make_physics_shapes(tmp_path / "b", videos=3, seed=7, cfg=cfg, workers=2, val_fraction=0.34, test_fraction=0.0)
    c = make_physics_shapes(tmp_path / "c", videos=3, seed=8, cfg=cfg, workers=1, val_fraction=0.34, test_fraction=0.0)
    assert _rows(a) == _rows(b) and _rows(a) != _rows(c)
    assert not (tmp_path / "a" / "test.csv").exists()
    for r in _rows(a):
        assert np.array_equal(decode_all(a.parent / r["path"]), decode_all(b.parent / r["path"]))


def _color_mask(frame: np.ndarray, color: tuple[int, int, int] | list[int], within: float = 70) -> np.ndarray:
    return np.linalg.norm(frame - np.asarray(color, np.float32), axis=-1) < within


def test_count_is_the_colours_in_the_first_frame(world: Path) -> None:
    for r, track, frames in _videos(world):
        present = [c for c in COLORS if _color_mask(frames[0], c).sum() >= 8]
        assert len(present) == int(r["count"]) == len(track["shapes"]), r["path"]
        assert list(COLORS[int(r["color"])]) == track["colors"][0]


def test_tracks_are_true_to_the_pixels(world: Path) -> None:
    """Where the main object is whole, in view and apart from the others, its colour (with its
    dark hand) sits at the tracked screen position, covers the tracked area and the hand points
    along the tracked angle."""
    checked = scaled = 0
    for r, track, frames in _videos(world):
        size, areas = track["size"], []
        yy, xx = np.mgrid[0:size, 0:size] + 0.5
        for t, frame in enumerate(frames):
            (x, y), rad = track["screen_pos"][t][0], track["screen_radius"][t][0]
            if track["main_visible"][t] < 1 or not (1.3 * rad < x < size - 1.3 * rad and 1.3 * rad < y < size - 1.3 * rad):
                continue
            others = [np.hypot(*(np.subtract(p, (x, y)))) - 1.4 * (rad + q)
                      for p, q in zip(track["screen_pos"][t][1:], track["screen_radius"][t][1:], strict=True)]
            if any(d < 0 for d in others):
                continue
            near = np.hypot(xx - x, yy - y) <= 1.15 * rad
            dark = near & (frame.max(-1) < 60)
            body = (_color_mask(frame, track["colors"][0], within=90) & near) | dark
            cx, cy = xx[body].mean(), yy[body].mean()
            assert math.hypot(cx - x, cy - y) < 1.5, (r["path"], t)
            # anti-aliased edges and chroma subsampling blur a frame's count; a wrong radius (a
            # zoom or growth left out) would drift by up to 2x over the video
            areas.append((body.sum(), AREA[track["shapes"][0]] * rad * rad))
            assert 0.6 < areas[-1][0] / areas[-1][1] < 1.4, (r["path"], t, areas[-1])
            if dark.sum() >= 3:
                seen = math.atan2(-(yy[dark].mean() - y), xx[dark].mean() - x)  # screen y points down
                err = (seen - track["angle"][t][0] + math.pi) % (2 * math.pi) - math.pi
                assert abs(err) < math.radians(30), (r["path"], t, math.degrees(err))
            checked += 1
        seen_area, tracked_area = np.log(np.asarray(areas, np.float64)).T if areas else (np.zeros(0), np.zeros(0))
        if len(areas) >= 4 and np.ptp(tracked_area) > 0.4:  # the size changes as tracked
            slope = np.polyfit(tracked_area, seen_area, 1)[0]
            assert 0.7 < slope < 1.4, (r["path"], slope)
            scaled += 1
    assert checked > 100 and scaled >= 3


def _bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sample img [H, W, C] at pixel-centre coordinates (x, y) (0.5 = first pixel's centre)."""
    h, w = img.shape[:2]
    x, y = np.clip(x - 0.5, 0, w - 1.001), np.clip(y - 0.5, 0, h - 1.001)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    return ((1 - fx) * (1 - fy) * img[y0, x0] + fx * (1 - fy) * img[y0, x0 + 1]
            + (1 - fx) * fy * img[y0 + 1, x0] + fx * fy * img[y0 + 1, x0 + 1])


def test_the_background_moves_with_the_tracked_camera(world: Path) -> None:
    """Warping the first frame by the tracked camera explains the last frame's background far
    better than a still camera does."""
    moving = 0
    for r, track, frames in _videos(world):
        if r["pan"] == "0" and r["zoom"] == "0":
            continue
        size, last = track["size"], len(frames) - 1
        c = size / 2
        yy, xx = np.mgrid[0:size, 0:size] + 0.5
        off0, off1 = np.asarray(track["camera_offset"][0]), np.asarray(track["camera_offset"][last])
        z0, z1 = track["camera_zoom"][0], track["camera_zoom"][last]
        wx, wy = c + off1[0] + (xx - c) / z1, c + off1[1] + (yy - c) / z1  # world under each last-frame pixel
        sx, sy = c + z0 * (wx - c - off0[0]), c + z0 * (wy - c - off0[1])  # where frame 0 saw that point
        keep = (sx > 1) & (sx < size - 1) & (sy > 1) & (sy < size - 1)
        for t, s in ((0, (sx, sy)), (last, (xx, yy))):  # away from every object, in both frames
            for p, q in zip(track["screen_pos"][t], track["screen_radius"][t], strict=True):
                keep &= np.hypot(s[0] - p[0], s[1] - p[1]) > 1.6 * q + 1
        assert keep.sum() > 200, r["path"]
        tracked = np.abs(_bilinear(frames[0], sx, sy) - frames[last])[keep].mean()
        still = np.abs(frames[0] - frames[last])[keep].mean()
        assert tracked < 7 and tracked < 0.5 * still, (r["path"], tracked, still)
        moving += 1
    assert moving >= 5


def test_labels_are_true_to_the_tracks(world: Path) -> None:
    for r, track, _ in _videos(world):
        pos = np.asarray(track["world_pos"])  # [T, N, 2]
        off, zoom = np.asarray(track["camera_offset"]), np.asarray(track["camera_zoom"])
        np.testing.assert_allclose(to_screen(pos, off[:, None], zoom[:, None], track["size"]), track["screen_pos"], atol=5e-3)
        angle, rad = np.asarray(track["angle"])[:, 0], np.asarray(track["world_radius"])[:, 0]
        assert int(r["spin"]) == (0 if angle[1] == angle[0] else 1 if angle[1] > angle[0] else 2)
        assert float(r["spin_rate"]) == pytest.approx(angle[1] - angle[0], abs=1e-3)
        assert int(r["scaling"]) == (0 if abs(rad[-1] / rad[0] - 1) < 1e-6 else 1 if rad[-1] > rad[0] else 2)
        assert float(r["scale_rate"]) == pytest.approx(rad[1] / rad[0] - 1, abs=1e-4)
        step = off[1] - off[0]
        pan = 0 if not step.any() else 1 + PAN_DIRECTIONS.index(tuple(float(v) for v in np.sign(step)))
        assert int(r["pan"]) == pan
        assert int(r["zoom"]) == (0 if zoom[-1] == zoom[0] else 1 if zoom[-1] > zoom[0] else 2)
        assert int(r["collisions"]) == len(track["collisions"])
        assert int(r["occluded"]) == int(min(track["main_visible"]) <= 0.75)
        # gravity: the main object's median acceleration in world pixels (bounces are rare outliers)
        acc = np.median(pos[2:, 0] - 2 * pos[1:-1, 0] + pos[:-2, 0], axis=0)
        g = np.asarray(track["gravity"])
        assert int(r["gravity"]) == (0 if not g.any() else 1 + DIRECTIONS.index(tuple(float(v) for v in np.sign(g))))
        np.testing.assert_allclose(acc, g, atol=0.03)
        for frame, i, j in track["collisions"]:  # colliding objects touch
            d = np.hypot(*(pos[frame, j] - pos[frame, i]))
            assert d <= 1.25 * (track["world_radius"][frame][i] + track["world_radius"][frame][j]) + 2.0


def test_every_factor_varies_and_each_can_be_switched_off(world: Path, tmp_path: Path) -> None:
    rows = _rows(world / "manifest.csv")
    for col in ("count", "spin", "scaling", "gravity", "pan", "zoom"):
        assert len({r[col] for r in rows}) > 1, col
    assert any(int(r["collisions"]) > 0 for r in rows)
    still = make_physics_shapes(tmp_path / "still", videos=6, seed=3, cfg=PhysicsShapesConfig(frames=8, factors=("gravity",)),
                                workers=1)
    for r in _rows(still):
        assert (r["spin"], r["scaling"], r["pan"], r["zoom"], r["collisions"]) == ("0", "0", "0", "0", "0")
    with pytest.raises(ValueError, match="unknown factor"):
        PhysicsShapesConfig(factors=("rotation", "wobble"))


def test_cli_writes_it_with_factors_held_out(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from jepa.training.cli import main

    out = tmp_path / "ps"
    args = ["data", "synth", "physics-shapes", "--out", str(out), "--videos", "10", "--frames", "8", "--workers", "1"]
    assert main([*args, "--without", "rotation", "zoom"]) == 0
    rows = _rows(out / "manifest.csv")
    assert len(rows) == 10 and {r["spin"] for r in rows} == {r["zoom"] for r in rows} == {"0"}
    assert len(_rows(out / "test.csv")) == len(_rows(out / "val.csv")) == 1 and len(list((out / "tracks").iterdir())) == 10
    assert "wrote 10 videos" in capsys.readouterr().out
    assert main(args) == 2  # never over an existing dataset without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0 and len({r["spin"] for r in _rows(out / "manifest.csv")}) > 1
    moving = ["data", "synth", "moving-shapes", "--out", str(tmp_path / "ms"), "--videos", "2", "--without", "pan"]
    assert main(moving) == 2 and "physics-shapes" in capsys.readouterr().err
