"""Per-frame latents of a frozen encoder, kept in memory by frame content (world models).

A world model on a frozen encoder (``encoder: timm:<name>`` or ``encoder_checkpoint``, DINO-WM /
V-JEPA 2-AC style) sees every training frame again each epoch, and overlapping clips see it
several times per epoch; the encoder's answer never changes. ``FrameLatentCache`` keys each
frame by a hash of its pixels, so any dataset, split or clip layout shares the entries, encodes
only the frames it has not seen and returns exactly what the encoder returned (same dtype). It
stops adding entries at ``budget_mb`` (entries already held keep serving hits).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch


class FrameLatentCache:
    """``encode(frames, fn)``: ``fn`` (uint8 frames ``[N, H, W, 3]`` -> latents ``[N, ...]``)
    applied only to the frames not cached yet."""

    def __init__(self, budget_mb: float) -> None:
        if budget_mb <= 0:
            raise ValueError(f"the latent cache budget must be positive, got {budget_mb} MB")
        self.budget_bytes = int(budget_mb * 2**20)
        self.used_bytes = 0
        self.entries: dict[bytes, torch.Tensor] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(frame: torch.Tensor) -> bytes:
        return hashlib.blake2b(frame.numpy().tobytes(), digest_size=16).digest()

    def encode(self, frames: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        keys = [self.key(f) for f in frames.detach().cpu().contiguous()]
        first: dict[bytes, int] = {}  # each frame not cached yet is encoded once, however often it occurs
        for i, k in enumerate(keys):
            if k not in self.entries and k not in first:
                first[k] = i
        self.misses += len(first)
        self.hits += len(keys) - len(first)
        fresh: dict[bytes, torch.Tensor] = {}
        if first:
            z = fn(frames[list(first.values())])
            for j, k in enumerate(first):
                fresh[k] = z[j]
                entry = z[j].detach()
                size = entry.numel() * entry.element_size()
                if self.used_bytes + size <= self.budget_bytes:
                    self.entries[k] = entry.cpu().clone()
                    self.used_bytes += size
        device = frames.device
        return torch.stack([fresh[k] if k in fresh else self.entries[k].to(device) for k in keys])
