"""Per-step learning-rate and weight-decay schedules (V-JEPA style).

LR: linear warmup from ``start_lr`` to ``lr`` over ``warmup_steps``, then cosine to
``final_lr``. Weight decay: cosine from ``weight_decay`` to ``final_weight_decay`` over all
steps (V-JEPA: 0.04 -> 0.4), applied only to parameter groups that decay (``wd_scale`` 1).
Implemented as an ``LRScheduler`` so Lightning steps it, logs it and saves it in checkpoints.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LRScheduler


def warmup_cosine(step: int, total: int, warmup: int, start: float, peak: float, final: float) -> float:
    """Linear ``start -> peak`` over ``warmup`` steps, then cosine ``peak -> final`` until ``total``."""
    if step < warmup:
        return start + (peak - start) * step / max(warmup, 1)
    frac = min((step - warmup) / max(total - warmup, 1), 1.0)
    return final + (peak - final) * 0.5 * (1.0 + math.cos(math.pi * frac))


def cosine(step: int, total: int, start: float, end: float) -> float:
    """Cosine from ``start`` to ``end`` over ``total`` steps."""
    frac = min(step / max(total, 1), 1.0)
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * frac))


class WarmupCosineLRWD(LRScheduler):
    """Warmup + cosine LR and cosine weight decay, stepped once per optimizer step."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        warmup_steps: int,
        lr: float,
        start_lr: float,
        final_lr: float,
        weight_decay: float,
        final_weight_decay: float,
    ) -> None:
        self.total_steps, self.warmup_steps = total_steps, warmup_steps
        self.peak_lr, self.start_lr, self.final_lr = lr, start_lr, final_lr
        self.wd, self.final_wd = weight_decay, final_weight_decay
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        step = self.last_epoch
        lr = warmup_cosine(step, self.total_steps, self.warmup_steps, self.start_lr, self.peak_lr, self.final_lr)
        wd = cosine(step, self.total_steps, self.wd, self.final_wd)
        for group in self.optimizer.param_groups:
            group["weight_decay"] = wd * group.get("wd_scale", 1.0)
        return [lr * group.get("lr_scale", 1.0) for group in self.optimizer.param_groups]

    @property
    def weight_decay(self) -> float:
        return cosine(self.last_epoch, self.total_steps, self.wd, self.final_wd)
