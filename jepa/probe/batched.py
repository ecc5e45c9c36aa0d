"""Many probe heads trained at once, as one batched model over the same cached features.

A probe run trains the same head many times: every point of the learning-rate x weight-decay
grid (to choose one on held-out training videos), then the chosen point once per seed. V-JEPA 2's
evaluation trains such a grid as one model; ``train_heads`` does the same for both head kinds.
Each *member* (lr, weight decay, seed) keeps exactly what training it alone
(``jepa.probe.train.train_head``) would give it:

* its own initial weights (the head built after ``torch.manual_seed(seed)``),
* its own batch order (a generator seeded with ``seed``; members with one seed share batches,
  and the tokens are then normalised once for all of them),
* its own optimizer state, learning rate, weight decay and schedule (AdamW or SGD written out
  for stacked tensors, the same update as ``torch.optim``),
* its own BatchNorm statistics (linear head) and LayerNorm parameters (attentive head).

The members' losses are summed, so each gets the gradient of its own loss. Trained members come
back as ordinary ``LinearHead`` / ``AttentiveHead`` modules (``test_probe`` checks them against
heads trained alone).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from jepa.probe.heads import AttentiveHead, LinearHead
from jepa.probe.train import HeadConfig, Standardizer, Task, _make_head

BN_EPS, BN_MOMENTUM, LN_EPS = 1e-5, 0.1, 1e-5


@dataclass(frozen=True)
class Member:
    """One head of a batched run."""

    lr: float
    weight_decay: float
    seed: int


def _stack(heads: Sequence[nn.Module]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Parameters (leaf tensors that require grad) and buffers, each stacked on a new dim 0."""
    params = {n: torch.stack([dict(h.named_parameters())[n].detach() for h in heads]).requires_grad_()
              for n, _ in heads[0].named_parameters()}
    buffers = {n: torch.stack([dict(h.named_buffers())[n] for h in heads]).clone() for n, _ in heads[0].named_buffers()}
    return params, buffers


def _linear_forward(p: dict[str, torch.Tensor], buf: dict[str, torch.Tensor], x: torch.Tensor, shared: bool) -> torch.Tensor:
    """``LinearHead`` in training mode for G members: x ``[B, D]`` (shared) or ``[G, B, D]`` -> ``[G, B, out]``."""
    centred = x - x.mean(-2, keepdim=True)
    var = centred.pow(2).mean(-2)  # [D] or [G, D], biased, as BatchNorm normalises
    mean = x.mean(-2)
    xn = centred * torch.rsqrt(var.unsqueeze(-2) + BN_EPS)
    with torch.no_grad():  # running statistics, as BatchNorm1d keeps them (unbiased variance)
        n = x.shape[-2]
        g = p["linear.weight"].shape[0]
        buf["norm.running_mean"].mul_(1 - BN_MOMENTUM).add_(BN_MOMENTUM * mean.expand(g, -1))
        buf["norm.running_var"].mul_(1 - BN_MOMENTUM).add_(BN_MOMENTUM * (var * n / max(1, n - 1)).expand(g, -1))
        buf["norm.num_batches_tracked"].add_(1)
    eq = "bd,god->gbo" if shared else "gbd,god->gbo"
    return torch.einsum(eq, xn, p["linear.weight"]) + p["linear.bias"][:, None]


def _ln(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LayerNorm of ``[G, B, D]`` with per-member affine ``[G, D]``."""
    return F.layer_norm(x, x.shape[-1:], eps=LN_EPS) * w[:, None] + b[:, None]


def _attentive_forward(p: dict[str, torch.Tensor], x: torch.Tensor, shared: bool, num_heads: int,
                       normalised: bool = False) -> torch.Tensor:
    """``AttentiveHead`` for G members: tokens ``[B, N, D]`` (shared) or ``[G, B, N, D]`` -> ``[G, B, out]``.

    The same single-query algebra as ``AttentiveHead.pool``; the LayerNorm before attention is
    applied without its affine part once for all members, which is folded into each member's
    score vectors and values (the per-head constant it adds to every score cancels in the softmax).
    ``normalised``: ``x`` is already that affine-free LayerNorm of the tokens.
    """
    g, d = p["norm_kv.weight"].shape
    h, dh = num_heads, d // num_heads
    xn = x if normalised else F.layer_norm(x, x.shape[-1:], eps=LN_EPS)
    w_ln, b_ln = p["norm_kv.weight"], p["norm_kv.bias"]  # [G, D]
    w_k = p["kv.weight"][:, :d].reshape(g, h, dh, d)
    w_v = p["kv.weight"][:, d:].reshape(g, h, dh, d)
    query = p["query"].reshape(g, d)
    q = (torch.einsum("gd,ged->ge", query, p["q.weight"]) + p["q.bias"]).reshape(g, h, dh)
    u = torch.einsum("ghc,ghcd->gdh", q, w_k) / math.sqrt(dh) * w_ln[:, :, None]  # [G, D, h]
    attn = torch.einsum("bnd,gdh->gbnh" if shared else "gbnd,gdh->gbnh", xn, u).softmax(2)
    mixed = torch.einsum("gbnh,bnd->gbhd" if shared else "gbnh,gbnd->gbhd", attn, xn)
    mixed = mixed * w_ln[:, None, None] + b_ln[:, None, None]  # attention weights sum to one
    heads = torch.einsum("gbhd,ghcd->gbhc", mixed, w_v) + p["kv.bias"][:, d:].reshape(g, 1, h, dh)
    b = heads.shape[1]
    z = query[:, None] + torch.einsum("gbe,gde->gbd", heads.reshape(g, b, d), p["proj.weight"]) + p["proj.bias"][:, None]
    m = _ln(z, p["norm_mlp.weight"], p["norm_mlp.bias"])
    m = F.gelu(torch.einsum("gbd,ghd->gbh", m, p["mlp.0.weight"]) + p["mlp.0.bias"][:, None])
    z = z + torch.einsum("gbh,gdh->gbd", m, p["mlp.2.weight"]) + p["mlp.2.bias"][:, None]
    z = _ln(z, p["norm_out.weight"], p["norm_out.bias"])
    return torch.einsum("gbd,god->gbo", z, p["linear.weight"]) + p["linear.bias"][:, None]


class _StackedOptimizer:
    """AdamW (decoupled decay) or SGD (Nesterov momentum 0.9, coupled decay) over stacked
    parameters, with a learning rate and weight decay per member, as ``torch.optim`` updates one head."""

    def __init__(self, params: dict[str, torch.Tensor], kind: str, weight_decay: torch.Tensor) -> None:
        self.params, self.kind, self.step_count = params, kind, 0
        # Decay only what the single head decays: tensors of a member with 2 or more dims.
        self.wd = {n: weight_decay if p.ndim - 1 >= 2 else torch.zeros_like(weight_decay) for n, p in params.items()}
        self.state = {n: (torch.zeros_like(p), torch.zeros_like(p)) for n, p in params.items()}

    @torch.no_grad()
    def step(self, lr: torch.Tensor) -> None:
        self.step_count += 1
        t = self.step_count
        for n, p in self.params.items():
            shape = (-1,) + (1,) * (p.ndim - 1)
            lr_b, wd_b = lr.view(shape), self.wd[n].view(shape)
            grad = p.grad
            m, v = self.state[n]
            if self.kind == "sgd":
                grad = grad + wd_b * p
                if t == 1:
                    m.copy_(grad)
                else:
                    m.mul_(0.9).add_(grad)
                p.sub_(lr_b * (grad + 0.9 * m))
            else:
                p.mul_(1 - lr_b * wd_b)
                m.mul_(0.9).add_(0.1 * grad)
                v.mul_(0.999).addcmul_(grad, grad, value=0.001)
                denom = v.sqrt() / math.sqrt(1 - 0.999**t) + 1e-8
                p.sub_(lr_b / (1 - 0.9**t) * m / denom)
            p.grad = None


def train_heads(
    cfg: HeadConfig,
    x: torch.Tensor,
    y: torch.Tensor,
    task: Task,
    num_out: int,
    members: Sequence[Member],
    device: str | torch.device = "cpu",
) -> list[tuple[nn.Module, Standardizer]]:
    """Train one head per member on features ``x`` ``[n, V, D]`` (or tokens ``[n, V, N, D]``) and
    labels ``y`` ``[n]`` in one batched run; returns ``(head, scaler)`` per member, as ``train_head``."""
    if not members:
        return []
    n, v = x.shape[:2]
    samples = x.reshape(n * v, *x.shape[2:])
    targets = y.repeat_interleave(v)
    scaler = Standardizer.fit(y, task)
    if task == "regression":
        targets = (targets.float() - scaler.mean) / scaler.std
    heads = []
    for mb in members:  # each member's initial weights, exactly as train_head draws them
        torch.manual_seed(mb.seed)
        heads.append(_make_head(cfg, x.shape[-1], num_out).to(device))
    params, buffers = _stack(heads)
    lr = torch.tensor([mb.lr for mb in members], dtype=torch.float32, device=device)
    opt = _StackedOptimizer(params, cfg.optimizer, torch.tensor([mb.weight_decay for mb in members],
                                                                dtype=torch.float32, device=device))
    seeds = sorted({mb.seed for mb in members})
    gens = {s: torch.Generator().manual_seed(s) for s in seeds}
    which = torch.tensor([seeds.index(mb.seed) for mb in members])
    shared = len(seeds) == 1
    bs = min(cfg.batch_size, len(samples))
    steps_per_epoch = max(1, len(samples) // bs)
    total, warmup = cfg.epochs * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch
    num_heads = heads[0].num_heads if isinstance(heads[0], AttentiveHead) else 0
    if num_heads:  # the affine-free LayerNorm of the tokens never changes: once, not per step and member
        samples = torch.cat([F.layer_norm(samples[i:i + 1024].float(), samples.shape[-1:], eps=LN_EPS)
                             for i in range(0, len(samples), 1024)])
    groups = [torch.tensor([g for g, mb in enumerate(members) if mb.seed == s], device=device) for s in seeds]
    regroup = torch.cat(groups).argsort()  # member order from seed-group order
    step = 0
    for _ in range(cfg.epochs):
        orders = torch.stack([torch.randperm(len(samples), generator=gens[s]) for s in seeds])  # [S, n*V]
        for i in range(steps_per_epoch):
            idx = orders[:, i * bs : (i + 1) * bs]  # [S, bs]
            yb = targets[idx[0]].to(device).expand(len(members), -1) if shared else targets[idx[which]].to(device)
            scale = (step + 1) / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
            if cfg.kind == "linear":
                xb = (samples[idx[0]] if shared else samples[idx[which]]).to(device).float()
                out = _linear_forward(params, buffers, xb, shared)
            elif shared:
                out = _attentive_forward(params, samples[idx[0]].to(device), True, num_heads, normalised=True)
            else:  # one batch per seed, read by all of that seed's members together
                out = torch.cat([_attentive_forward({k: t[grp] for k, t in params.items()}, samples[idx[j]].to(device),
                                                    True, num_heads, normalised=True)
                                 for j, grp in enumerate(groups)])[regroup]
            if task == "classification":
                loss = F.cross_entropy(out.flatten(0, 1), yb.flatten(), reduction="none").view(len(members), -1).mean(1)
            else:
                loss = ((out.squeeze(-1) - yb) ** 2).mean(1)
            loss.sum().backward()
            opt.step(lr * scale)
            step += 1
    out_heads = []
    for g, head in enumerate(heads):
        state = {k: t[g].detach().clone() for k, t in (params | buffers).items()}
        head.load_state_dict(state)
        out_heads.append((head.eval(), scaler))
    return out_heads


__all__ = ["Member", "train_heads", "LinearHead", "AttentiveHead"]
