"""Device-side batch transforms: shapes, ranges, per-sample parameters, temporal consistency,
seeded determinism, and agreement with torchvision's reference crops."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import RandomResizedCrop

from data_pipelines.transforms import (
    CenterCropVideo,
    RandomResizedCropVideo,
    crop_resize_normalize,
    sample_crop_boxes,
)

NO_NORM = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}


def _video(b: int = 4, t: int = 6, h: int = 48, w: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, h, w, 3), dtype=torch.uint8, generator=g)


def test_shapes_dtype_and_normalisation() -> None:
    video = _video()
    out = RandomResizedCropVideo(size=32)(video, generator=torch.Generator().manual_seed(0))
    assert out.shape == (4, 3, 6, 32, 32) and out.dtype == torch.float32
    raw = RandomResizedCropVideo(size=(24, 40), **NO_NORM)(video)
    assert raw.shape == (4, 3, 6, 24, 40)
    assert raw.min() >= 0.0 and raw.max() <= 1.0
    # ImageNet normalisation of a mid-grey clip.
    grey = torch.full((1, 2, 8, 8, 3), 128, dtype=torch.uint8)
    out = CenterCropVideo(size=8, crop_fraction=1.0)(grey)
    expected = torch.tensor([(128 / 255 - m) / s for m, s in zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), strict=True)])
    assert torch.allclose(out[0, :, 0, 0, 0], expected, atol=1e-5)


def test_full_box_is_identity_and_flip_is_exact() -> None:
    video = _video()
    boxes = torch.tensor([[0.0, 0.0, 64.0, 48.0]]).repeat(4, 1)
    out = crop_resize_normalize(video, boxes, (48, 64), **NO_NORM)
    ref = video.permute(0, 4, 1, 2, 3).float() / 255  # [B, C, T, H, W]
    assert torch.allclose(out, ref, atol=1e-6)
    flip = torch.tensor([True, False, True, False])
    out = crop_resize_normalize(video, boxes, (48, 64), flip, **NO_NORM)
    assert torch.allclose(out[0], ref[0].flip(-1), atol=1e-6)
    assert torch.allclose(out[1], ref[1], atol=1e-6)


def test_matches_torchvision_resized_crop() -> None:
    """Per-sample crops agree with torchvision's antialiased resized_crop (the CPU reference)."""
    video = _video(b=3, t=2, h=64, w=64)
    boxes = sample_crop_boxes(torch.tensor([[64, 64]] * 3), generator=torch.Generator().manual_seed(3))
    out = crop_resize_normalize(video, boxes, (32, 32), **NO_NORM)
    # A smooth image makes the comparison about geometry, not about filter kernels.
    smooth = torch.nn.functional.avg_pool2d(
        video.permute(0, 1, 4, 2, 3).reshape(6, 3, 64, 64).float(), 9, 1, 4, count_include_pad=False
    ).round().to(torch.uint8).view(3, 2, 3, 64, 64)
    out = crop_resize_normalize(smooth.permute(0, 1, 3, 4, 2), boxes, (32, 32), **NO_NORM)
    for i, (x0, y0, x1, y1) in enumerate(boxes.long().tolist()):
        ref = TF.resized_crop(smooth[i], y0, x0, y1 - y0, x1 - x0, [32, 32], antialias=True)
        ref = ref.float().permute(1, 0, 2, 3) / 255  # [C, T, h, w]
        assert (out[i] - ref).abs().mean() < 0.01, i


def test_boxes_respect_scale_ratio_and_differ_per_sample() -> None:
    size = torch.tensor([[90, 160]] * 2000)
    boxes = sample_crop_boxes(size, (0.3, 1.0), (0.75, 1.35), torch.Generator().manual_seed(0))
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 160).all() and (boxes[:, 3] <= 90).all()
    frac = w * h / (90 * 160)
    assert frac.min() > 0.28 and frac.max() <= 1.0
    # Same distribution as torchvision's RandomResizedCrop (draws that don't fit are rejected).
    torch.manual_seed(0)
    img = torch.empty(3, 90, 160)
    ref = [RandomResizedCrop.get_params(img, [0.3, 1.0], [0.75, 1.35]) for _ in range(2000)]
    ref_frac = torch.tensor([hh * ww / (90 * 160) for _, _, hh, ww in ref])
    assert abs(frac.mean().item() - ref_frac.mean().item()) < 0.02
    assert abs(frac.std().item() - ref_frac.std().item()) < 0.02
    assert ((w / h) > 0.73).all() and ((w / h) < 1.38).all()
    assert len({tuple(b) for b in boxes[:16].tolist()}) == 16  # parameters drawn per sample
    # Fallback for a frame too elongated for any try: the largest centred crop within `ratio`.
    thin = sample_crop_boxes(torch.tensor([[10, 200]]), (0.9, 1.0), (0.75, 1.35))
    assert thin.tolist() == [[math.floor((200 - 14) / 2), 0.0, math.floor((200 - 14) / 2) + 14, 10.0]]


def test_temporally_consistent() -> None:
    """All frames of a clip share one crop and flip: frame t = frame 0 + a brightness step,
    so after the transform the per-frame difference must stay a constant everywhere."""
    base = _video(b=8, t=1).repeat(1, 5, 1, 1, 1).clamp(max=200)
    video = base + torch.arange(5, dtype=torch.uint8).view(1, 5, 1, 1, 1) * 10
    out = RandomResizedCropVideo(size=24, **NO_NORM)(video, generator=torch.Generator().manual_seed(1))
    diff = out - out[:, :, :1]
    expected = (torch.arange(5).float() * 10 / 255).view(1, 1, 5, 1, 1).expand_as(diff)
    assert torch.allclose(diff, expected, atol=1e-5)


def test_seeded_and_reproducible() -> None:
    video = _video(b=6)
    t = RandomResizedCropVideo(size=32)
    a = t(video, generator=torch.Generator().manual_seed(5))
    b = t(video, generator=torch.Generator().manual_seed(5))
    c = t(video, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    boxes, flip = t.params(torch.tensor([[48, 64]] * 64), torch.Generator().manual_seed(0))
    assert 10 < int(flip.sum()) < 54  # flips drawn per sample


def test_padded_batches_crop_inside_each_frame() -> None:
    video = torch.zeros((2, 2, 40, 60, 3), dtype=torch.uint8)
    video[0, :, :20, :30] = 255  # clip 0 is 20x30 inside a padded 40x60 batch
    video[1] = 255
    size = torch.tensor([[20, 30], [40, 60]])
    out = RandomResizedCropVideo(size=16, **NO_NORM)(video, size, torch.Generator().manual_seed(0))
    assert torch.allclose(out, torch.ones_like(out))  # never sees the zero padding
    out = CenterCropVideo(size=16, **NO_NORM)(video, size)
    assert torch.allclose(out, torch.ones_like(out))


def test_eval_transform_matches_resize_then_center_crop() -> None:
    video = _video(b=2, t=2, h=64, w=96)
    smooth = torch.nn.functional.avg_pool2d(
        video.permute(0, 1, 4, 2, 3).reshape(4, 3, 64, 96).float(), 7, 1, 3, count_include_pad=False
    ).round().to(torch.uint8).view(2, 2, 3, 64, 96)
    out = CenterCropVideo(size=28, crop_fraction=0.875, **NO_NORM)(smooth.permute(0, 1, 3, 4, 2))
    ref = TF.center_crop(TF.resize(smooth[0], [32], antialias=True), [28, 28]).float() / 255
    assert (out[0] - ref.permute(1, 0, 2, 3)).abs().mean() < 0.01
    assert torch.equal(out, CenterCropVideo(size=28, **NO_NORM)(smooth.permute(0, 1, 3, 4, 2)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    video = _video()
    t = RandomResizedCropVideo(size=32)
    cpu = t(video, generator=torch.Generator().manual_seed(0))
    gpu = t(video.cuda(), generator=torch.Generator().manual_seed(0))
    assert gpu.is_cuda and torch.allclose(gpu.cpu(), cpu, atol=1e-4)
