"""Built-in synthetic dataset with more of what real video holds: ``physics-shapes``.

One to three shapes move under simple 2D physics inside a walled world, filmed by a moving
camera over a textured background. Each factor below can be switched off (``factors``), so a
probe can be scored on a factor that pretraining never saw (pretrain ``--without rotation``,
probe ``spin`` on videos with rotation).

Factors:
  gravity     one constant acceleration on every object: none, down, up, left or right
  collisions  objects bounce elastically off each other (as discs) and always off the walls;
              switched off, they pass through each other
  rotation    every object spins at its own rate; a dark hand from its centre to its rim makes
              the spin visible for every shape, circles included
  scaling     the main object grows or shrinks over the video (or neither)
  pan         the camera moves at a constant velocity: none, right, left, down or up
  zoom        the camera zooms in or out about the view centre (or neither)
Objects are drawn in a random depth order, so they occlude each other; the background is a
texture fixed in world coordinates, so it moves with the camera; every frame gets sensor noise.

Labels (one manifest column each; the *main* object is object 0, always present):
  count       number of objects (1-3)
  shape       main object's geometry (``SHAPES`` index)
  color       main object's colour (``COLORS`` index); objects never share a colour
  spin        main object's rotation on screen: 0 none, 1 counter-clockwise, 2 clockwise
  scaling     main object's size: 0 constant, 1 growing, 2 shrinking
  gravity     0 none, 1 down, 2 up, 3 left, 4 right (screen directions)
  pan         camera motion: 0 none, 1 right, 2 left, 3 down, 4 up (the scene moves the other way)
  zoom        0 none, 1 in, 2 out
  collisions  object-object collisions in the video
  occluded    1 if another object ever hides at least a quarter of the main object, else 0
  spin_rate   main object's angular speed, radians per frame, counter-clockwise positive
  scale_rate  main object's relative size change per frame
Per-frame ground truth (``tracks/<video>.json``): every object's world position, screen
position, angle, world and screen radius and visible fraction, the camera's offset and zoom, and
the frames of each collision. The tests check the tracks against the decoded pixels and the
labels against the tracks.

Run:  jepa data synth physics-shapes --out data/physics_shapes --videos 2000 --seed 0
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from data_pipelines.synth import COLORS, SHAPES, shape_mask
from data_pipelines.writers import map_jobs, prepare_dataset_dir, write_split_manifests, write_video

FACTORS: tuple[str, ...] = ("gravity", "collisions", "rotation", "scaling", "pan", "zoom")
LABEL_COLUMNS: tuple[str, ...] = (
    "count", "shape", "color", "spin", "scaling", "gravity", "pan", "zoom", "collisions", "occluded",
    "spin_rate", "scale_rate",
)
MAX_OBJECTS = 3
# Unit vectors (screen x right, y down) of gravity classes 1..4 and pan classes 1..4.
DIRECTIONS: tuple[tuple[float, float], ...] = ((0.0, 1.0), (0.0, -1.0), (-1.0, 0.0), (1.0, 0.0))
PAN_DIRECTIONS: tuple[tuple[float, float], ...] = ((1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0))
GRAVITY = 0.1  # px / frame^2
HAND_COLOR = (18.0, 18.0, 18.0)
SUBSTEPS = 4


@dataclass(frozen=True)
class PhysicsShapesConfig:
    """Knobs of the generator. Defaults write 2,000 videos in a few minutes on 2 cores."""

    size: int = 64  # frame height and width in pixels (even)
    frames: int = 32
    fps: int = 25
    factors: tuple[str, ...] = FACTORS  # the factors that vary; the others are held at "none"
    gop: int = 16
    crf: int = 18
    codec: str = "libx264"
    container: str = "mp4"

    def __post_init__(self) -> None:
        unknown = [f for f in self.factors if f not in FACTORS]
        if unknown:
            raise ValueError(f"unknown factor(s) {unknown}; choose from {list(FACTORS)}")


@dataclass
class Scene:
    """Everything random about one video, drawn from its seed."""

    count: int
    shapes: list[int]
    colors: list[int]
    radius: np.ndarray  # [N] world radius at frame 0
    pos: np.ndarray  # [N, 2] world position at frame 0
    vel: np.ndarray  # [N, 2] px / frame
    angle: np.ndarray  # [N] radians at frame 0 (counter-clockwise on screen)
    spin_rate: np.ndarray  # [N] radians / frame
    scale_rate: float  # main object's relative size change per frame
    gravity: int
    pan: int
    pan_speed: float
    zoom: int
    zoom_rate: float
    collide: bool
    depth: list[int]  # drawing order, back to front
    background: dict[str, Any] = field(default_factory=dict)


def _class_rate(rng: np.random.Generator, on: bool, lo: float, hi: float) -> tuple[int, float]:
    """(class, signed rate): class 0 with rate 0, 1 with +rate, 2 with -rate."""
    if not on:
        return 0, 0.0
    k = int(rng.integers(3))
    rate = float(rng.uniform(lo, hi))
    return k, (0.0, rate, -rate)[k]


def draw_scene(rng: np.random.Generator, cfg: PhysicsShapesConfig) -> Scene:
    s, on = cfg.size, set(cfg.factors)
    count = int(rng.integers(1, MAX_OBJECTS + 1))
    shapes = [int(rng.integers(len(SHAPES))) for _ in range(count)]
    colors = [int(c) for c in rng.permutation(len(COLORS))[:count]]
    radius = s * rng.uniform(0.10, 0.14, size=count)
    pos = np.zeros((count, 2))
    for i in range(count):  # no overlap at frame 0, all inside the walls
        for _ in range(1000):
            p = rng.uniform(radius[i] * 1.2, s - radius[i] * 1.2, size=2)
            if all(np.hypot(*(p - pos[j])) > 1.1 * (radius[i] + radius[j]) for j in range(i)):
                break
        pos[i] = p
    theta = rng.uniform(0, 2 * math.pi, size=count)
    vel = rng.uniform(0.8, 2.0, size=count)[:, None] * np.stack([np.cos(theta), np.sin(theta)], 1)
    spins = [_class_rate(rng, "rotation" in on, 0.08, 0.16) for _ in range(count)]
    scaling, scale_rate = _class_rate(rng, "scaling" in on, 0.010, 0.014)
    gravity = int(rng.integers(len(DIRECTIONS) + 1)) if "gravity" in on else 0
    pan = int(rng.integers(len(PAN_DIRECTIONS) + 1)) if "pan" in on else 0
    zoom, zoom_rate = _class_rate(rng, "zoom" in on, 0.008, 0.012)
    background = {
        "base": float(rng.uniform(115, 150)),
        "gratings": [(float(rng.uniform(0.1, 0.5)), float(rng.uniform(0, math.pi)),
                      float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(5, 11))) for _ in range(3)],
        "blobs": [(float(rng.uniform(-s / 2, 1.5 * s)), float(rng.uniform(-s / 2, 1.5 * s)),
                   float(rng.uniform(2, 6)), float(rng.uniform(-30, 30))) for _ in range(24)],
        "tint": [float(t) for t in rng.uniform(-10, 10, size=3)],
    }
    return Scene(
        count=count, shapes=shapes, colors=colors, radius=radius, pos=pos, vel=vel,
        angle=rng.uniform(0, 2 * math.pi, size=count), spin_rate=np.array([r for _, r in spins]),
        scale_rate=scale_rate if scaling else 0.0, gravity=gravity, pan=pan,
        pan_speed=float(rng.uniform(0.4, 0.6)) if pan else 0.0, zoom=zoom, zoom_rate=zoom_rate,
        collide="collisions" in on, depth=[int(d) for d in rng.permutation(count)], background=background,
    )


def simulate(scene: Scene, cfg: PhysicsShapesConfig) -> dict[str, Any]:
    """World positions, radii and angles per frame, and the collision events (frame, i, j)."""
    s, n, steps = cfg.size, scene.count, cfg.frames
    g = np.zeros(2) if scene.gravity == 0 else GRAVITY * np.asarray(DIRECTIONS[scene.gravity - 1])
    pos, vel = scene.pos.copy(), scene.vel.copy()
    growth = np.ones(n)
    growth[0] = 1.0 + scene.scale_rate
    pos_t = np.zeros((steps, n, 2))
    rad_t = np.zeros((steps, n))
    events: list[tuple[int, int, int]] = []
    dt = 1.0 / SUBSTEPS
    for t in range(steps):
        radius = scene.radius * growth ** t
        pos_t[t], rad_t[t] = pos, radius
        if t == steps - 1:
            break
        touching = set()
        for _ in range(SUBSTEPS):
            vel = vel + g * dt
            pos = pos + vel * dt
            for a in range(2):  # walls of the world box [0, size]
                low, high = pos[:, a] < radius, pos[:, a] > s - radius
                vel[low, a], vel[high, a] = np.abs(vel[low, a]), -np.abs(vel[high, a])
                pos[:, a] = np.clip(pos[:, a], radius, s - radius)
            if not scene.collide:
                continue
            for i in range(n):
                for j in range(i + 1, n):
                    d = pos[j] - pos[i]
                    dist = float(np.hypot(*d))
                    if dist >= radius[i] + radius[j] or dist == 0:
                        continue
                    normal = d / dist
                    closing = float((vel[i] - vel[j]) @ normal)
                    if closing > 0:  # elastic, masses ~ area
                        mi, mj = radius[i] ** 2, radius[j] ** 2
                        vel[i] = vel[i] - 2 * mj / (mi + mj) * closing * normal
                        vel[j] = vel[j] + 2 * mi / (mi + mj) * closing * normal
                        if (i, j) not in touching:
                            events.append((t + 1, i, j))
                            touching.add((i, j))
    angle_t = scene.angle[None] + scene.spin_rate[None] * np.arange(steps)[:, None]
    return {"pos": pos_t, "radius": rad_t, "angle": angle_t, "events": events}


def camera(scene: Scene, cfg: PhysicsShapesConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: the camera's offset in world pixels [T, 2] and its zoom factor [T]."""
    t = np.arange(cfg.frames, dtype=np.float64)
    direction = np.zeros(2) if scene.pan == 0 else np.asarray(PAN_DIRECTIONS[scene.pan - 1])
    return scene.pan_speed * t[:, None] * direction[None], np.exp(scene.zoom_rate * t)


def to_screen(world: np.ndarray, offset: np.ndarray, zoom: float | np.ndarray, size: int) -> np.ndarray:
    """World points [..., 2] -> screen pixels, zooming about the view centre."""
    c = size / 2
    return c + np.asarray(zoom)[..., None] * (world - c - offset)


def _texture(bg: dict[str, Any], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The background at world coordinates: gratings and soft blobs, [..., 3] float."""
    gray = np.full(x.shape, bg["base"], np.float32)
    for freq, theta, phase, amp in bg["gratings"]:
        gray += amp * np.sin(freq * (x * math.cos(theta) + y * math.sin(theta)) + phase)
    for bx, by, sigma, amp in bg["blobs"]:
        gray += amp * np.exp(-((x - bx) ** 2 + (y - by) ** 2) / (2 * sigma * sigma))
    # kept in [70, 200]: never as dark as an object's hand, never as bright as a saturated colour
    return np.clip(gray, 70.0, 200.0)[..., None] + np.asarray(bg["tint"], np.float32)


def render(scene: Scene, sim: dict[str, Any], cfg: PhysicsShapesConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """uint8 frames [T, H, W, 3] and the main object's visible fraction per frame [T]."""
    size, steps, ss = cfg.size, cfg.frames, 2  # ss: supersampling for anti-aliasing
    offset, zoom = camera(scene, cfg)
    grid = (np.arange(size * ss, dtype=np.float32) + 0.5) / ss
    sy, sx = np.meshgrid(grid, grid, indexing="ij")
    c = size / 2
    wx = c + offset[:, 0, None, None] + (sx[None] - c) / zoom[:, None, None]  # [T, ss*H, ss*W] world x
    wy = c + offset[:, 1, None, None] + (sy[None] - c) / zoom[:, None, None]
    # the background is smooth: one sample per pixel, at its centre, repeated to the supersampled grid
    py, px = np.meshgrid(np.arange(size, dtype=np.float32) + 0.5, np.arange(size, dtype=np.float32) + 0.5, indexing="ij")
    img = _texture(scene.background, c + offset[:, 0, None, None] + (px[None] - c) / zoom[:, None, None],
                   c + offset[:, 1, None, None] + (py[None] - c) / zoom[:, None, None])  # [T, H, W, 3]
    img = img.repeat(ss, axis=1).repeat(ss, axis=2)
    masks = []
    for i in range(scene.count):
        dx = wx - sim["pos"][:, i, 0, None, None]
        dy = wy - sim["pos"][:, i, 1, None, None]
        a = sim["angle"][:, i, None, None]
        # object frame: u along the hand (angle a, counter-clockwise on screen; screen y points down)
        u = np.cos(a) * dx - np.sin(a) * dy
        v = np.sin(a) * dx + np.cos(a) * dy
        r = sim["radius"][:, i, None, None]
        inside = shape_mask(SHAPES[scene.shapes[i]], u, v, r)
        hand = inside & (u >= 0) & (u <= 0.9 * r) & (np.abs(v) <= 0.2 * r)
        masks.append((inside, hand))
    covered = np.zeros_like(masks[0][0])
    main_area = masks[0][0].reshape(steps, -1).sum(1)
    for i in scene.depth:
        inside, hand = masks[i]
        color = np.asarray(COLORS[scene.colors[i]], np.float32)
        img = np.where(inside[..., None], color, img)
        img = np.where(hand[..., None], np.asarray(HAND_COLOR, np.float32), img)
        if i != 0:
            covered |= inside
    hidden_by_above = np.zeros_like(covered)
    for i in scene.depth[scene.depth.index(0) + 1:]:
        hidden_by_above |= masks[i][0]
    visible = np.where(main_area > 0, (masks[0][0] & ~hidden_by_above).reshape(steps, -1).sum(1) / np.maximum(main_area, 1), 0.0)
    frames = img.reshape(steps, size, ss, size, ss, 3).mean(axis=(2, 4))
    frames = frames + rng.normal(0, 2.0, size=frames.shape)
    return np.clip(frames + 0.5, 0, 255).astype(np.uint8), visible


def labels(scene: Scene, sim: dict[str, Any], visible: np.ndarray) -> dict[str, object]:
    spin = 0 if scene.spin_rate[0] == 0 else (1 if scene.spin_rate[0] > 0 else 2)
    scaling = 0 if scene.scale_rate == 0 else (1 if scene.scale_rate > 0 else 2)
    return {
        "count": scene.count, "shape": scene.shapes[0], "color": scene.colors[0], "spin": spin,
        "scaling": scaling, "gravity": scene.gravity, "pan": scene.pan, "zoom": scene.zoom,
        "collisions": len(sim["events"]), "occluded": int(float(visible.min()) <= 0.75),
        "spin_rate": round(float(scene.spin_rate[0]), 4), "scale_rate": round(scene.scale_rate, 5),
    }


def tracks(scene: Scene, sim: dict[str, Any], visible: np.ndarray, cfg: PhysicsShapesConfig) -> dict[str, Any]:
    offset, zoom = camera(scene, cfg)
    screen = to_screen(sim["pos"], offset[:, None], zoom[:, None], cfg.size)

    def r(a: np.ndarray) -> list:
        return np.round(a, 4).tolist()

    return {
        "size": cfg.size, "frames": cfg.frames, "shapes": [SHAPES[k] for k in scene.shapes],
        "colors": [list(COLORS[k]) for k in scene.colors], "depth": scene.depth,
        "world_pos": r(sim["pos"]), "screen_pos": r(screen), "angle": r(sim["angle"]),
        "world_radius": r(sim["radius"]), "screen_radius": r(sim["radius"] * zoom[:, None]),
        "main_visible": r(visible), "camera_offset": r(offset), "camera_zoom": r(zoom),
        "collisions": [list(e) for e in sim["events"]],
        "gravity": [0.0, 0.0] if scene.gravity == 0 else [GRAVITY * d for d in DIRECTIONS[scene.gravity - 1]],
    }


def _make_one(args: tuple[int, int, str, PhysicsShapesConfig]) -> dict[str, object]:
    index, seed, out_dir, cfg = args
    rng = np.random.default_rng([seed, index])
    scene = draw_scene(rng, cfg)
    sim = simulate(scene, cfg)
    frames, visible = render(scene, sim, cfg, rng)
    name = f"videos/{index:06d}.{cfg.container}"
    write_video(Path(out_dir) / name, frames, cfg.fps, cfg.codec, cfg.gop, cfg.crf)
    track_path = Path(out_dir) / "tracks" / f"{index:06d}.json"
    track_path.write_text(json.dumps(tracks(scene, sim, visible, cfg)))
    return {"path": name, **labels(scene, sim, visible)}


def make_physics_shapes(
    out: str | os.PathLike,
    videos: int = 2000,
    seed: int = 0,
    cfg: PhysicsShapesConfig | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    workers: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``videos`` files under ``out/videos/``, their tracks under ``out/tracks/`` and the
    manifests ``manifest.csv`` (all) plus seeded ``train.csv`` / ``val.csv`` / ``test.csv``.
    Returns the path of ``manifest.csv``. An existing dataset in ``out`` is an error unless
    ``overwrite`` (then it is replaced whole). Video i depends only on (seed, i)."""
    cfg = cfg or PhysicsShapesConfig()
    if cfg.size % 2:
        raise ValueError(f"size must be even for yuv420p video, got {cfg.size}")
    out = Path(out)
    prepare_dataset_dir(out, "videos", overwrite, extra_subdirs=("tracks",))
    jobs = [(i, seed, str(out), cfg) for i in range(videos)]
    rows = map_jobs(_make_one, jobs, workers)
    return write_split_manifests(out, rows, seed, val_fraction, test_fraction)
