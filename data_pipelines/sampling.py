"""Which frames make a clip: ``num_frames`` frames ``frame_step`` apart (or at a target fps).

A clip spans ``(num_frames - 1) * step + 1`` frames of the source. ``mode="random"`` draws the
start uniformly among all starts that fit (training); ``mode="uniform"`` spreads
``clips_per_video`` clips evenly over the video, first at frame 0 and last ending on the last
frame (evaluation, V-JEPA's multi-view protocol); one uniform clip is centred.

Videos shorter than one clip: ``short_videos="skip"`` (default) treats the file as bad input
(logged, counted, replaced; an error in strict mode); ``"pad"`` takes every ``step``-th frame
that exists and repeats the last one to fill the clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from data_pipelines.decoding import DecodeError


@dataclass(frozen=True)
class ClipSampler:
    """Frame-index sampler. ``fps`` (if set) overrides ``frame_step``."""

    num_frames: int = 16
    frame_step: int = 4
    fps: float | None = None
    clips_per_video: int = 1
    mode: Literal["random", "uniform"] = "random"
    short_videos: Literal["skip", "pad"] = "skip"

    def __post_init__(self) -> None:
        if self.num_frames < 1 or self.frame_step < 1 or self.clips_per_video < 1:
            raise ValueError(
                f"num_frames, frame_step and clips_per_video must be >= 1, got "
                f"{self.num_frames}, {self.frame_step}, {self.clips_per_video}"
            )
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.mode not in ("random", "uniform"):
            raise ValueError(f"mode must be 'random' or 'uniform', got {self.mode!r}")
        if self.short_videos not in ("skip", "pad"):
            raise ValueError(f"short_videos must be 'skip' or 'pad', got {self.short_videos!r}")

    def step_for(self, video_fps: float) -> int:
        """Frame step in source frames: ``frame_step``, or source fps / target fps, rounded."""
        if self.fps is None or not video_fps:
            return self.frame_step
        return max(1, round(video_fps / self.fps))

    def span(self, step: int) -> int:
        return (self.num_frames - 1) * step + 1

    def __call__(
        self,
        video_frames: int,
        video_fps: float = 0.0,
        generator: torch.Generator | None = None,
        path: str = "<video>",
    ) -> np.ndarray:
        """Frame indices, int64 ``[clips_per_video, num_frames]``."""
        step = self.step_for(video_fps)
        span = self.span(step)
        offsets = np.arange(self.num_frames, dtype=np.int64) * step
        k = self.clips_per_video
        if video_frames < span:
            if self.short_videos == "skip" or video_frames < 1:
                raise DecodeError(
                    path,
                    "too_short",
                    f"{video_frames} frames, a clip needs {span} "
                    f"({self.num_frames} frames, step {step})",
                )
            return np.minimum(offsets, (video_frames - 1) // step * step)[None].repeat(k, 0)
        room = video_frames - span  # number of valid starts minus one
        if self.mode == "random":
            starts = torch.randint(0, room + 1, (k,), generator=generator).numpy()
        elif k == 1:
            starts = np.asarray([room // 2])
        else:
            starts = np.round(np.linspace(0, room, k)).astype(np.int64)
        return starts[:, None].astype(np.int64) + offsets[None]
