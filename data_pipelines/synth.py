"""Built-in synthetic dataset: moving shapes over a textured background, written as H.264 mp4.

Each video shows one *main* shape (the labelled one) moving in a straight line at constant
velocity on a torus (it leaves one edge and re-enters at the opposite one, so its direction and
speed are the same in every clip of the video), plus small distractor discs that bounce off the
walls. The background is a static, low-saturation texture; main shapes use saturated colours, so
the labelled object is easy to find in the pixels (the label-truth test does exactly that).

Labels (one manifest column each):
  shape      class of the main shape's geometry (``SHAPES``), independent of its colour
  direction  8 bins of the motion angle; bin k is centred on k*45 degrees, counter-clockwise from
             +x (image right), with image up as +y; angles are jittered by at most 15 degrees
  speed      bin of the speed in pixels per frame (``SPEEDS``)
  color      index into ``COLORS``
  angle      the exact motion angle in degrees (continuous, for regression probes)
  speed_px   the exact speed in pixels per frame (continuous)

Run:  jepa data synth moving-shapes --out data/moving_shapes --videos 2000 --seed 0
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from data_pipelines.writers import map_jobs, prepare_dataset_dir, write_split_manifests, write_video

# write_manifest is not used here; imported so ``from data_pipelines.synth import write_manifest``
# keeps working (the writers lived in this module before data_pipelines.writers).
from data_pipelines.writers import write_manifest as write_manifest

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
SPEEDS: tuple[float, ...] = (0.75, 1.5, 2.5)  # px / frame, bin centres
NUM_DIRECTIONS = 8
COLORS: tuple[tuple[int, int, int], ...] = (
    (225, 35, 35),
    (35, 200, 55),
    (45, 75, 235),
    (235, 215, 30),
    (215, 40, 205),
    (30, 205, 215),
)
LABEL_COLUMNS: tuple[str, ...] = ("shape", "direction", "speed", "color", "angle", "speed_px")


@dataclass(frozen=True)
class MovingShapesConfig:
    """Knobs of the generator. Defaults write 2,000 videos in about a minute on 2 cores."""

    size: int = 64  # frame height and width in pixels (even)
    frames: int = 32
    fps: int = 25
    distractors: int = 1
    gop: int = 16  # keyframe interval: clips of the default length cross GOP boundaries
    crf: int = 18
    codec: str = "libx264"
    container: str = "mp4"


@dataclass(frozen=True)
class VideoSpec:
    """Everything random about one video, drawn from its seed."""

    shape: int
    direction: int
    speed: int
    color: int
    angle: float  # degrees
    speed_px: float
    radius: float
    rotation: float  # radians, fixed for the video
    x0: float
    y0: float


def draw_spec(rng: np.random.Generator, cfg: MovingShapesConfig) -> VideoSpec:
    direction = int(rng.integers(NUM_DIRECTIONS))
    speed = int(rng.integers(len(SPEEDS)))
    return VideoSpec(
        shape=int(rng.integers(len(SHAPES))),
        direction=direction,
        speed=speed,
        color=int(rng.integers(len(COLORS))),
        angle=direction * 45.0 + float(rng.uniform(-15.0, 15.0)),
        speed_px=SPEEDS[speed] * float(rng.uniform(0.9, 1.1)),
        radius=cfg.size * float(rng.uniform(0.12, 0.16)),
        rotation=float(rng.uniform(0.0, 2 * math.pi)),
        x0=float(rng.uniform(0, cfg.size)),
        y0=float(rng.uniform(0, cfg.size)),
    )


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Static muted texture: a few random gratings plus noise, low saturation. [H, W, 3] float."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    base = rng.uniform(80, 150)
    gray = np.full((size, size), base, np.float32)
    for _ in range(3):
        freq = rng.uniform(0.04, 0.25)
        theta = rng.uniform(0, math.pi)
        phase = rng.uniform(0, 2 * math.pi)
        gray += rng.uniform(8, 22) * np.sin(
            freq * (xx * math.cos(theta) + yy * math.sin(theta)) + phase
        )
    tint = rng.uniform(-12, 12, size=3).astype(np.float32)
    img = gray[..., None] + tint + rng.normal(0, 4, size=(size, size, 3)).astype(np.float32)
    return np.clip(img, 0, 255)


def shape_mask(kind: str, u: np.ndarray, v: np.ndarray, r: float | np.ndarray) -> np.ndarray:
    """Inside test in the shape's own frame (u right, v down), radius r."""
    if kind == "circle":
        return u * u + v * v <= r * r
    if kind == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8 * r
    if kind == "triangle":  # equilateral, circumradius r, pointing up (-v)
        inside = v <= 0.5 * r
        for ang in (math.radians(30), math.radians(150)):
            # the two slanted edges, each at distance r/2 from the centre
            inside &= (u * math.cos(ang) - v * math.sin(ang)) <= 0.5 * r
        return inside
    if kind == "cross":
        w = 0.35 * r
        return ((np.abs(u) <= r) & (np.abs(v) <= w)) | ((np.abs(v) <= r) & (np.abs(u) <= w))
    raise ValueError(f"unknown shape {kind!r}; expected one of {SHAPES}")


def render(spec: VideoSpec, cfg: MovingShapesConfig, rng: np.random.Generator) -> np.ndarray:
    """Render one video to uint8 frames [T, H, W, 3]."""
    size, steps, ss = cfg.size, cfg.frames, 2  # ss: supersampling factor for anti-aliasing
    frames = np.repeat(_background(rng, size)[None], steps, axis=0)  # [T, H, W, 3]
    # Sample points at sub-pixel centres, [ss*H, ss*W] each.
    coords = (np.arange(size * ss, dtype=np.float32) + 0.5) / ss
    gy, gx = np.meshgrid(coords, coords, indexing="ij")

    def coverage(mask: np.ndarray) -> np.ndarray:  # [T, ss*H, ss*W] bool -> [T, H, W, 1]
        return mask.reshape(steps, size, ss, size, ss).mean(axis=(2, 4))[..., None]

    # Distractors: small light discs bouncing off the walls, drawn under the main shape.
    t = np.arange(steps, dtype=np.float32)
    for _ in range(cfg.distractors):
        rd = size * float(rng.uniform(0.05, 0.07))
        pos = rng.uniform(rd, size - rd, size=2)
        vel = rng.uniform(-2.0, 2.0, size=2)
        path = np.empty((steps, 2), np.float32)
        for i in range(steps):
            path[i] = pos
            pos = pos + vel
            for a in range(2):
                if not rd <= pos[a] <= size - rd:
                    vel[a] = -vel[a]
                    pos[a] = np.clip(pos[a], rd, size - rd)
        d2 = (gx[None] - path[:, 0, None, None]) ** 2 + (gy[None] - path[:, 1, None, None]) ** 2
        alpha = coverage(d2 <= rd * rd)
        shade = float(rng.uniform(200, 245))
        frames = frames * (1 - alpha) + shade * alpha

    # Main shape: constant velocity on the torus; image y points down, so +angle moves up.
    rad = math.radians(spec.angle)
    cx = (spec.x0 + spec.speed_px * math.cos(rad) * t) % size  # [T]
    cy = (spec.y0 - spec.speed_px * math.sin(rad) * t) % size
    dx = (gx[None] - cx[:, None, None] + size / 2) % size - size / 2  # wrap-aware offsets
    dy = (gy[None] - cy[:, None, None] + size / 2) % size - size / 2
    c, s = math.cos(spec.rotation), math.sin(spec.rotation)
    u, v = c * dx + s * dy, -s * dx + c * dy
    alpha = coverage(shape_mask(SHAPES[spec.shape], u, v, spec.radius))
    frames = frames * (1 - alpha) + np.asarray(COLORS[spec.color], np.float32) * alpha
    return np.clip(frames + 0.5, 0, 255).astype(np.uint8)


def _make_one(args: tuple[int, int, str, MovingShapesConfig]) -> dict[str, object]:
    index, seed, out_dir, cfg = args
    rng = np.random.default_rng([seed, index])
    spec = draw_spec(rng, cfg)
    frames = render(spec, cfg, rng)
    name = f"videos/{index:06d}.{cfg.container}"
    write_video(Path(out_dir) / name, frames, cfg.fps, cfg.codec, cfg.gop, cfg.crf)
    row = {k: v for k, v in asdict(spec).items() if k in LABEL_COLUMNS}
    row["angle"] = round(spec.angle, 3)
    row["speed_px"] = round(spec.speed_px, 4)
    return {"path": name, **row}


def make_moving_shapes(
    out: str | os.PathLike,
    videos: int = 2000,
    seed: int = 0,
    cfg: MovingShapesConfig | None = None,
    val_fraction: float = 0.2,
    workers: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``videos`` files under ``out/videos/`` and manifests ``manifest.csv`` (all),
    ``train.csv`` and ``val.csv`` (a seeded split). Returns the path of ``manifest.csv``.
    An existing dataset in ``out`` is an error unless ``overwrite`` (then it is replaced whole).

    Deterministic for a seed: video i depends only on (seed, i), whatever the worker count.
    """
    cfg = cfg or MovingShapesConfig()
    if cfg.size % 2:
        raise ValueError(f"size must be even for yuv420p video, got {cfg.size}")
    out = Path(out)
    prepare_dataset_dir(out, "videos", overwrite)
    jobs = [(i, seed, str(out), cfg) for i in range(videos)]
    rows = map_jobs(_make_one, jobs, workers)
    return write_split_manifests(out, rows, seed, val_fraction)
