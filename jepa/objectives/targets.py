"""Where prediction targets come from (``TargetKind``), and the EMA target encoder.

``target`` of both methods:

  ema       a copy of the context encoder that never receives gradients and follows it by an
            exponential moving average (V-JEPA, BYOL-style); the targets carry no gradient.
  stopgrad  the online encoder's own outputs, detached (PLDM / EB-JEPA); only the regulariser
            prevents collapse.
  online    the online encoder's outputs with their gradient: no stop-gradient anywhere
            (LeJEPA-style); the prediction loss pulls on both sides and the regulariser alone
            (SIGReg or VICReg) keeps the embeddings from collapsing.

The EMA target encoder is a copy of the context encoder that never receives gradients; after each
optimizer step its weights move towards the context encoder's:

    theta_target <- m * theta_target + (1 - m) * theta_context

with ``m`` following a schedule over optimizer steps (V-JEPA: linear 0.998 -> 1.0). The update
is called from ``LightningModule.optimizer_step``, which runs once per optimizer step, so it is
correct under gradient accumulation (micro-batches do not move the target).
"""

from __future__ import annotations

import copy
import math
from typing import Literal

import torch
from torch import nn

TargetKind = Literal["ema", "stopgrad", "online"]


def momentum_at(
    step: int, total_steps: int, start: float = 0.998, end: float = 1.0, kind: Literal["linear", "cosine"] = "linear"
) -> float:
    """EMA momentum at optimizer step ``step`` of ``total_steps`` (clamped at the end)."""
    frac = min(max(step / max(total_steps, 1), 0.0), 1.0)
    if kind == "linear":
        return start + (end - start) * frac
    if kind == "cosine":
        return end - (end - start) * (math.cos(math.pi * frac) + 1.0) / 2.0
    raise ValueError(f"unknown momentum schedule {kind!r}; choose linear or cosine")


class TargetEncoder(nn.Module):
    """A frozen copy of ``encoder`` that always stays in eval mode (no drop path)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = copy.deepcopy(encoder)
        self.encoder.requires_grad_(False)
        self.encoder.eval()

    def train(self, mode: bool = True) -> TargetEncoder:  # noqa: ARG002 - eval forever
        super().train(False)
        return self

    @torch.no_grad()
    def update(self, online: nn.Module, momentum: float) -> None:
        """theta <- m * theta + (1 - m) * theta_online; buffers are copied."""
        tgt = [p for p in self.encoder.parameters()]
        src = [p.detach() for p in online.parameters()]
        if len(tgt) != len(src):
            raise RuntimeError("target and online encoders have different parameter lists")
        torch._foreach_mul_(tgt, momentum)
        torch._foreach_add_(tgt, src, alpha=1.0 - momentum)
        for bt, bs in zip(self.encoder.buffers(), online.buffers(), strict=True):
            bt.copy_(bs)

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        return self.encoder(*args, **kwargs)
