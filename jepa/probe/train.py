"""Training and scoring probe heads on cached features.

Every (video, view) pair is a training sample. At evaluation the views of a video are combined
(softmax probabilities averaged for classification, predictions averaged for regression), as in
V-JEPA's multi-view protocol. ``train_head`` trains one head alone (the reference that the
batched trainer, ``jepa.probe.batched``, is tested against); the selection protocol is in
``jepa.probe.select``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from jepa.probe.heads import AttentiveHead, LinearHead

HeadKind = Literal["linear", "attentive"]
Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class HeadConfig:
    """How one kind of head is trained."""

    kind: HeadKind = "linear"
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lrs: tuple[float, ...] = (1e-3, 1e-2)
    weight_decays: tuple[float, ...] = (1e-4, 1e-2, 1e-1)
    epochs: int = 50
    batch_size: int = 256
    warmup_epochs: int = 0
    holdout: float = 0.2  # fraction of training videos used to choose lr x wd
    num_heads: int | None = None  # attentive probe heads (default dim // 64)
    select_per_seed: bool = True  # each seed chooses its own (lr, wd) (False: seed 0's choice for all)


def primary_metric(task: Task) -> str:
    return "top1" if task == "classification" else "r2"


def _make_head(cfg: HeadConfig, dim: int, out: int) -> nn.Module:
    if cfg.kind == "linear":
        return LinearHead(dim, out)
    if cfg.kind == "attentive":
        return AttentiveHead(dim, out, cfg.num_heads)
    raise ValueError(f"unknown head {cfg.kind!r}; choose linear or attentive")


@dataclass
class Standardizer:
    """Regression targets are learned standardised and reported in their own units."""

    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def fit(cls, y: torch.Tensor, task: Task) -> Standardizer:
        if task == "classification":
            return cls()
        return cls(float(y.mean()), float(y.std().clamp_min(1e-8)))


def train_head(
    cfg: HeadConfig,
    x: torch.Tensor,
    y: torch.Tensor,
    task: Task,
    num_out: int,
    lr: float,
    weight_decay: float,
    seed: int,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, Standardizer]:
    """Train a head on features ``x`` ``[n, V, D]`` (or ``[n, V, N, D]`` tokens) and labels ``y`` ``[n]``."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    n, v = x.shape[:2]
    samples = x.reshape(n * v, *x.shape[2:])
    targets = y.repeat_interleave(v)
    scaler = Standardizer.fit(y, task)
    if task == "regression":
        targets = (targets.float() - scaler.mean) / scaler.std
    head = _make_head(cfg, x.shape[-1], num_out).to(device)
    decay = [p for p in head.parameters() if p.ndim >= 2]
    rest = [p for p in head.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)
    else:
        opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))
    bs = min(cfg.batch_size, len(samples))
    steps_per_epoch = max(1, len(samples) // bs)  # drop the ragged tail (BatchNorm wants > 1 row)
    total, warmup = cfg.epochs * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch
    head.train()
    step = 0
    for _ in range(cfg.epochs):
        order = torch.randperm(len(samples), generator=gen)
        for i in range(steps_per_epoch):
            idx = order[i * bs : (i + 1) * bs]
            xb, yb = samples[idx].to(device).float(), targets[idx].to(device)
            scale = (step + 1) / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
            for g in opt.param_groups:
                g["lr"] = lr * scale
            out = head(xb)
            loss = F.cross_entropy(out, yb) if task == "classification" else F.mse_loss(out.squeeze(-1), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    return head.eval(), scaler


@torch.no_grad()
def predict(head: nn.Module, x: torch.Tensor, batch_size: int = 512, device: str | torch.device = "cpu") -> torch.Tensor:
    """Per-view outputs ``[n, V, out]`` of a trained head."""
    n, v = x.shape[:2]
    flat = x.reshape(n * v, *x.shape[2:])
    outs = [head(flat[i : i + batch_size].to(device).float()).cpu() for i in range(0, len(flat), batch_size)]
    return torch.cat(outs).view(n, v, -1)


def score(outputs: torch.Tensor, y: torch.Tensor, task: Task, scaler: Standardizer) -> dict[str, float]:
    """Metrics of per-view outputs ``[n, V, out]`` against labels ``[n]``; views are combined."""
    if task == "classification":
        probs = outputs.softmax(-1)
        mean = probs.mean(1)
        res = {
            "top1": float((mean.argmax(-1) == y).float().mean() * 100),
            "top1_single_view": float((probs.argmax(-1) == y[:, None]).float().mean() * 100),
        }
        if mean.shape[-1] > 5:
            top5 = mean.topk(5, -1).indices
            res["top5"] = float((top5 == y[:, None]).any(-1).float().mean() * 100)
        return res
    pred = outputs.squeeze(-1).mean(1) * scaler.std + scaler.mean
    y = y.float()
    mse = float(((pred - y) ** 2).mean())
    var = float(((y - y.mean()) ** 2).mean())
    return {"r2": 1.0 - mse / var if var > 0 else float("nan"), "mse": mse}


def split_holdout(n: int, fraction: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint (fit, holdout) video indices of a training set of ``n`` videos."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    k = max(1, int(round(n * fraction)))
    if k >= n:
        raise ValueError(f"cannot hold out {fraction:.0%} of {n} training videos")
    return order[k:], order[:k]


def _mean(v: list[float]) -> float:
    return sum(v) / len(v)


def _std(v: list[float]) -> float:
    if len(v) < 2:
        return 0.0
    m = _mean(v)
    return math.sqrt(sum((a - m) ** 2 for a in v) / (len(v) - 1))
