"""Shared fixtures: small synthetic datasets and hand-made videos, all generated per session; and
the headless-Chromium runner the page tests share."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from data_pipelines.synth import MovingShapesConfig, make_moving_shapes
from data_pipelines.writers import write_video

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium on a local page (``--dump-dom``, ``--screenshot=...``, ...), logging to stderr."""
    assert CHROMIUM is not None
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0"]
    return subprocess.run([CHROMIUM, *flags, *args, page.resolve().as_uri()], capture_output=True, text=True, timeout=120)


def console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


def smooth_frames(t: int, h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """uint8 [T, H, W, 3] with a moving gradient and a frame-numbered bar, so every frame differs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(0, 2 * np.pi, 3)
    frames = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        for c in range(3):
            frames[i, :, :, c] = 127 + 100 * np.sin(0.15 * xx + 0.1 * yy + base[c] + 0.3 * i)
        frames[i, : h // 6, : (i % w) + 1] = 255  # a bar that grows with the frame number
    return frames


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("moving_shapes")
    make_moving_shapes(out, videos=24, seed=0, cfg=MovingShapesConfig(), workers=1)
    return out


@pytest.fixture(scope="session")
def gop_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """61 frames, keyframe every 8, B-frames on: clips cross GOP boundaries."""
    path = tmp_path_factory.mktemp("gop") / "gop.mp4"
    write_video(path, smooth_frames(61), fps=25, codec="libx264", gop=8)
    return path


@pytest.fixture()
def make_video(tmp_path: Path):
    def _make(name: str, t: int = 40, codec: str = "libx264", gop: int = 8, **kw) -> Path:
        path = tmp_path / name
        write_video(path, smooth_frames(t), fps=25, codec=codec, gop=gop, **kw)
        return path

    return _make
