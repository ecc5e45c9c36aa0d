"""Batch transforms that run on the training device: uint8 clips in, normalised float clips out.

Input: uint8 ``[B, T, H, W, 3]`` (the loader's layout), optionally ``frame_size`` ``[B, 2]``
giving each clip's valid (H, W) when a batch was padded. Output: float32
``[B, 3, T, h, w]``, normalised with ``mean``/``std`` (the encoder's input layout).

Crop and resize are one ``torchvision.ops.roi_align`` call over the whole batch: each clip gets
its own box, all frames of a clip share it (frames are folded into channels), and the adaptive
sampling ratio averages several bilinear samples per output pixel when shrinking, which
anti-aliases like an area resize. The same code runs on CPU and CUDA.

Randomness: crop boxes and flips are drawn on the CPU from the ``torch.Generator`` passed in
(or the global RNG), then moved to the device, so a seed gives the same parameters on any
device. Box sampling follows torchvision's ``RandomResizedCrop`` (10 tries of area fraction
``scale`` and log-uniform aspect ``ratio``, then a centre-crop fallback), vectorised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torchvision.ops import roi_align

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _frame_size(video: torch.Tensor, frame_size: torch.Tensor | None) -> torch.Tensor:
    if frame_size is None:
        b, _, h, w, _ = video.shape
        return torch.tensor([[h, w]], dtype=torch.float64).expand(b, 2)
    return frame_size.detach().to("cpu", torch.float64)


def sample_crop_boxes(
    frame_size: torch.Tensor,
    scale: tuple[float, float] = (0.3, 1.0),
    ratio: tuple[float, float] = (0.75, 1.35),
    generator: torch.Generator | None = None,
    tries: int = 10,
) -> torch.Tensor:
    """Random-resized-crop boxes ``[B, 4]`` as (x0, y0, x1, y1) in pixels, for frames of size
    ``frame_size`` ``[B, 2]`` (H, W). Integer-aligned like torchvision's."""
    h, w = frame_size[:, 0:1].double(), frame_size[:, 1:2].double()  # [B, 1]
    b = h.shape[0]
    area = h * w * torch.empty(b, tries, dtype=torch.float64).uniform_(*scale, generator=generator)
    log_r = torch.empty(b, tries, dtype=torch.float64).uniform_(
        math.log(ratio[0]), math.log(ratio[1]), generator=generator
    )
    cw = torch.sqrt(area * torch.exp(log_r)).round()
    ch = torch.sqrt(area / torch.exp(log_r)).round()
    ok = (cw >= 1) & (ch >= 1) & (cw <= w) & (ch <= h)  # [B, tries]
    first = ok.double().argmax(1, keepdim=True)
    cw, ch = cw.gather(1, first).squeeze(1), ch.gather(1, first).squeeze(1)
    found = ok.any(1)
    # Fallback (no try fitted): the largest centred crop with an aspect inside `ratio`.
    h, w = h.squeeze(1), w.squeeze(1)
    in_ratio = w / h
    fb_w = torch.where(in_ratio < ratio[0], w, torch.where(in_ratio > ratio[1], (h * ratio[1]).round(), w))
    fb_h = torch.where(in_ratio < ratio[0], (w / ratio[0]).round(), h)
    cw, ch = torch.where(found, cw, fb_w), torch.where(found, ch, fb_h)
    u = torch.rand(b, 2, dtype=torch.float64, generator=generator)
    x0 = torch.where(found, (u[:, 0] * (w - cw + 1)).floor(), ((w - cw) / 2).floor())
    y0 = torch.where(found, (u[:, 1] * (h - ch + 1)).floor(), ((h - ch) / 2).floor())
    return torch.stack([x0, y0, x0 + cw, y0 + ch], 1)


def center_crop_boxes(
    frame_size: torch.Tensor, out_size: tuple[int, int], crop_fraction: float = 0.875
) -> torch.Tensor:
    """Boxes ``[B, 4]`` equivalent to: resize so the output covers ``out_size / crop_fraction``,
    then centre-crop ``out_size`` (the usual eval transform, e.g. 256 -> 224)."""
    h, w = frame_size[:, 0].double(), frame_size[:, 1].double()
    oh, ow = out_size
    f = torch.maximum(oh / h, ow / w) / crop_fraction  # output pixels per source pixel
    ch, cw = oh / f, ow / f
    x0, y0 = (w - cw) / 2, (h - ch) / 2
    return torch.stack([x0, y0, x0 + cw, y0 + ch], 1)


def crop_resize_normalize(
    video: torch.Tensor,
    boxes: torch.Tensor,
    out_size: tuple[int, int],
    flip: torch.Tensor | None = None,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> torch.Tensor:
    """uint8 ``[B, T, H, W, C]`` + boxes ``[B, 4]`` -> normalised float ``[B, C, T, h, w]``."""
    b, t, hh, ww, c = video.shape
    x = video.permute(0, 1, 4, 2, 3).reshape(b, t * c, hh, ww).float()  # frames folded into channels
    rois = torch.cat([torch.arange(b, dtype=torch.float64)[:, None], boxes.cpu().double()], 1)
    out = roi_align(
        x, rois.to(device=x.device, dtype=x.dtype), out_size, 1.0, sampling_ratio=-1, aligned=True
    )  # [B, T*C, h, w]
    if flip is not None:
        out = torch.where(flip.to(out.device)[:, None, None, None], out.flip(-1), out)
    out = out.view(b, t, c, *out_size).transpose(1, 2)  # [B, C, T, h, w]
    scale = torch.tensor([1 / (255 * s) for s in std], device=out.device).view(1, c, 1, 1, 1)
    shift = torch.tensor([m / s for m, s in zip(mean, std, strict=True)], device=out.device).view(1, c, 1, 1, 1)
    return (out * scale - shift).contiguous()


@dataclass
class RandomResizedCropVideo:
    """Training transform: per-clip random resized crop + horizontal flip + normalise.

    V-JEPA defaults: area scale 0.3-1.0, aspect 0.75-1.35, flip with probability 0.5.
    """

    size: int | tuple[int, int] = 224
    scale: tuple[float, float] = (0.3, 1.0)
    ratio: tuple[float, float] = (0.75, 1.35)
    hflip_prob: float = 0.5
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def params(
        self, frame_size: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Crop boxes ``[B, 4]`` and flip flags ``[B]``, drawn on the CPU."""
        boxes = sample_crop_boxes(frame_size, self.scale, self.ratio, generator)
        flip = torch.rand(boxes.shape[0], generator=generator) < self.hflip_prob
        return boxes, flip

    def __call__(
        self,
        video: torch.Tensor,
        frame_size: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        boxes, flip = self.params(_frame_size(video, frame_size), generator)
        return crop_resize_normalize(video, boxes, _pair(self.size), flip, self.mean, self.std)


@dataclass
class CenterCropVideo:
    """Evaluation transform: resize to ``size / crop_fraction``, centre crop ``size``, normalise."""

    size: int | tuple[int, int] = 224
    crop_fraction: float = 0.875
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __call__(self, video: torch.Tensor, frame_size: torch.Tensor | None = None) -> torch.Tensor:
        size = _pair(self.size)
        boxes = center_crop_boxes(_frame_size(video, frame_size), size, self.crop_fraction)
        return crop_resize_normalize(video, boxes, size, None, self.mean, self.std)
