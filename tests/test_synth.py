"""The built-in moving-shapes dataset: deterministic, and its labels are true to the pixels."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from data_pipelines.decoding import decode_all
from data_pipelines.synth import (
    COLORS,
    LABEL_COLUMNS,
    SPEEDS,
    MovingShapesConfig,
    make_moving_shapes,
)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_manifest_and_splits(synth_dir: Path) -> None:
    rows = _rows(synth_dir / "manifest.csv")
    assert len(rows) == 24
    assert list(rows[0]) == ["path", *LABEL_COLUMNS]
    train = {r["path"] for r in _rows(synth_dir / "train.csv")}
    val = {r["path"] for r in _rows(synth_dir / "val.csv")}
    assert train.isdisjoint(val) and train | val == {r["path"] for r in rows}
    assert len(val) == round(24 * 0.2)
    assert all((synth_dir / r["path"]).is_file() for r in rows)


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    cfg = MovingShapesConfig(frames=12)
    a = make_moving_shapes(tmp_path / "a", videos=3, seed=7, cfg=cfg, workers=1)
    b = make_moving_shapes(tmp_path / "b", videos=3, seed=7, cfg=cfg, workers=2)
    c = make_moving_shapes(tmp_path / "c", videos=3, seed=8, cfg=cfg, workers=1)
    assert _rows(a) == _rows(b)
    assert _rows(a) != _rows(c)
    for r in _rows(a):
        assert np.array_equal(decode_all(a.parent / r["path"]), decode_all(b.parent / r["path"]))


def _circular_centroid(mask: np.ndarray) -> tuple[float, float]:
    """Centroid on a torus (the main shape wraps around the frame edges)."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    cx = math.atan2(np.sin(2 * np.pi * xs / w).mean(), np.cos(2 * np.pi * xs / w).mean())
    cy = math.atan2(np.sin(2 * np.pi * ys / h).mean(), np.cos(2 * np.pi * ys / h).mean())
    return (cx * w / (2 * np.pi)) % w, (cy * h / (2 * np.pi)) % h


def test_labels_are_true_to_the_pixels(synth_dir: Path) -> None:
    """Find the main shape by its colour in the decoded video, measure its velocity, and check
    the direction bin, speed and speed bin in the manifest."""
    rows = _rows(synth_dir / "manifest.csv")
    directions_seen = set()
    for r in rows:
        frames = decode_all(synth_dir / r["path"]).astype(np.float32)  # [T, H, W, 3]
        color = np.asarray(COLORS[int(r["color"])], np.float32)
        masks = np.linalg.norm(frames - color, axis=-1) < 60  # [T, H, W]
        assert masks.sum(axis=(1, 2)).min() > 10, r["path"]
        centres = np.asarray([_circular_centroid(m) for m in masks])  # [T, 2] (x, y)
        h, w = masks.shape[1:]
        step = np.diff(centres, axis=0)
        step = (step + [w / 2, h / 2]) % [w, h] - [w / 2, h / 2]  # wrap-aware displacement
        vx, vy = np.median(step, axis=0)
        angle = math.degrees(math.atan2(-vy, vx)) % 360  # image y points down
        assert round(angle / 45) % 8 == int(r["direction"]), (r, angle)
        speed = math.hypot(vx, vy)
        assert abs(speed - float(r["speed_px"])) < 0.15 * float(r["speed_px"]) + 0.1, (r, speed)
        assert int(np.argmin([abs(speed - s) for s in SPEEDS])) == int(r["speed"])
        directions_seen.add(int(r["direction"]))
    assert len(directions_seen) >= 5  # the check covered many directions
