"""``jepa data inspect``: build the data module, pull one training batch, print what it holds.

This is what a training step sees: clips decoded in workers, moved to the device, cropped,
flipped and normalised there.  Run:  jepa data inspect data/moving_shapes
"""

from __future__ import annotations

import time

import torch

from data_pipelines.datamodule import VideoDataModule


def _describe(name: str, value: torch.Tensor) -> str:
    if value.is_floating_point():
        stats = f"min {value.min():.3f} max {value.max():.3f} mean {value.mean():.3f} std {value.std():.3f}"
    elif value.numel() > 64:
        stats = f"min {int(value.min())} max {int(value.max())} mean {value.float().mean():.1f}"
    else:
        shown = value.flatten()[:8].tolist()
        stats = f"values {shown}{' ...' if value.numel() > 8 else ''}"
    return f"  {name:<14} {str(tuple(value.shape)):<22} {str(value.dtype).replace('torch.', ''):<8} {stats}"


def inspect_batch(dm: VideoDataModule, device: str = "cpu", train: bool = True) -> str:
    """Decode one batch through ``dm`` and return a printable summary."""
    dm.setup("fit")
    start = time.perf_counter()
    loader = dm.train_dataloader() if train else dm.val_dataloader()
    raw = next(iter(loader))
    decode_s = time.perf_counter() - start
    lines = [
        f"dataset: {dm.hparams.train} ({len(dm.train_set)} videos)",
        f"first batch decoded in {decode_s:.2f} s "
        f"({dm.hparams.num_workers} workers, incl. worker start-up)",
        "as loaded (CPU, uint8, channels last):",
    ]
    lines += [_describe(k, v) for k, v in raw.items()]
    batch = {k: v.to(device, non_blocking=True) for k, v in raw.items()}
    start = time.perf_counter()
    batch = dm.apply_transform(batch, train=train)
    lines.append(
        f"after the {'training' if train else 'evaluation'} transform on {device} "
        f"({(time.perf_counter() - start) * 1e3:.1f} ms; [B, C, T, H, W], normalised):"
    )
    lines += [_describe(k, v) for k, v in batch.items() if k == "video"]
    lines.append(f"bad files skipped so far: {dm.skip_count}")
    return "\n".join(lines)
