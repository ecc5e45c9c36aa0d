"""The evaluation transform as a function: a video file in, normalised clips for an encoder out.

    import jepa
    enc = jepa.load_encoder("encoder.pt")
    clips = jepa.read_clips("video.mp4", enc, views=2)   # [2, 3, T, H, W]
    tokens = enc.forward_features(clips)                 # [2, N, D]

Clips are ``views`` evenly spaced windows of the encoder's ``num_frames`` frames (at the frame
step or fps it was trained with), each cut into ``crops`` square crops (1: centre; 3: start, centre,
end) of side ``crop_fraction`` x the shorter frame side, resized to the encoder's input size and
normalised with the mean/std it was trained with. This is exactly what ``jepa probe`` feeds the
encoder, so features computed here match the probe's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from data_pipelines.decoding import PyAVReader
from data_pipelines.sampling import ClipSampler
from data_pipelines.transforms import IMAGENET_MEAN, IMAGENET_STD, crop_resize_normalize
from jepa.models.vit import VideoViT


@dataclass(frozen=True)
class ClipSpec:
    """How clips are cut from each video and turned into encoder input."""

    num_frames: int = 16
    frame_step: int = 2
    fps: float | None = None  # if set, frames are taken at this rate (overrides frame_step)
    size: int = 224  # square crop fed to the encoder
    crop_fraction: float = 1.0  # crop side / shorter frame side
    views: int = 1  # evenly spaced clips per video
    crops: int = 1  # spatial crops per clip (1: centre; 3: start, centre, end)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.views < 1 or self.crops < 1:
            raise ValueError(f"views and crops must be >= 1, got views={self.views}, crops={self.crops}")
        if not 0 < self.crop_fraction <= 1:
            raise ValueError(f"crop_fraction must be in (0, 1], got {self.crop_fraction}")

    def sampler(self) -> ClipSampler:
        """``views`` evenly spaced clips per video."""
        return ClipSampler(self.num_frames, self.frame_step, fps=self.fps, clips_per_video=self.views, mode="uniform")


def crop_boxes(frame_size: torch.Tensor, spec: ClipSpec) -> list[torch.Tensor]:
    """``spec.crops`` boxes ``[B, 4]`` per clip: a square of side ``crop_fraction`` x the shorter
    side, at the start, centre and end of the free room (along both axes)."""
    h, w = frame_size[:, 0].double(), frame_size[:, 1].double()
    side = torch.minimum(h, w) * spec.crop_fraction
    positions = [0.5] if spec.crops == 1 else [i / (spec.crops - 1) for i in range(spec.crops)]
    return [
        torch.stack([(w - side) * p, (h - side) * p, (w - side) * p + side, (h - side) * p + side], 1)
        for p in positions
    ]


def clip_spec_for(
    encoder: VideoViT,
    meta: dict[str, Any] | None = None,
    views: int = 1,
    crops: int = 1,
    frame_step: int | None = None,
    crop_fraction: float = 1.0,
) -> ClipSpec:
    """The clip spec an encoder expects: its input size, and the frame step / mean / std it was
    trained with (``meta["data"]``, from ``encoder_meta``; ``encoder.meta`` when omitted)."""
    t, h, w = encoder.input_size
    if h != w:
        raise ValueError(f"evaluation clips are square; the encoder's input size is {h}x{w}")
    if meta is None:
        meta = getattr(encoder, "meta", None) or {}
    data = meta.get("data") or {}
    kw: dict[str, Any] = {}
    if data.get("mean") is not None and data.get("std") is not None:
        kw["mean"], kw["std"] = tuple(data["mean"]), tuple(data["std"])
    step = frame_step or data.get("frame_step") or 2
    fps = None if frame_step else data.get("fps")  # an explicit frame step wins over a trained fps
    return ClipSpec(
        num_frames=t, frame_step=int(step), fps=fps, size=h, crop_fraction=crop_fraction, views=views, crops=crops, **kw
    )


def read_clips(
    path: str | os.PathLike[str],
    encoder_or_spec: VideoViT | ClipSpec,
    views: int = 1,
    crops: int = 1,
    crop_fraction: float = 1.0,
) -> torch.Tensor:
    """Decode ``path`` and apply the evaluation transform: float ``[views * crops, 3, T, H, W]``
    (view-major). ``views``/``crops``/``crop_fraction`` apply when an encoder is given."""
    spec = encoder_or_spec if isinstance(encoder_or_spec, ClipSpec) else clip_spec_for(
        encoder_or_spec, views=views, crops=crops, crop_fraction=crop_fraction
    )
    sampler = spec.sampler()
    reader = PyAVReader(path)
    try:
        idx = sampler(reader.num_frames, reader.fps, path=str(path))  # [V, T]
        video = torch.from_numpy(reader.get_frames(idx.reshape(-1))).view(*idx.shape, reader.height, reader.width, 3)
        size = torch.tensor([[reader.height, reader.width]] * spec.views)
    finally:
        reader.close()
    views_ = [
        crop_resize_normalize(video, box, (spec.size, spec.size), None, spec.mean, spec.std)
        for box in crop_boxes(size, spec)
    ]  # crops x [V, C, T, s, s]
    return torch.stack(views_, 1).flatten(0, 1)
