"""``JepaMethod``: what every JEPA LightningModule shares; a method adds only its forward and loss.

Owned here, once for all methods:

* optimiser: AdamW over ``trained_modules()`` with weight decay on weight matrices only
  (``param_groups``), warmup + cosine learning rate and cosine weight decay per optimizer step
  (``jepa.methods.schedules``);
* the EMA target step after each real optimizer step (momentum schedule ``ema_momentum`` /
  ``ema_schedule``; not after a skipped non-finite step, not per micro-batch);
* the regulariser (``jepa.objectives``): built from the recipe's spec, set up for the embedding
  width, applied with ``regularize``;
* the throughput timer (``perf/clips_per_s``), loss-term logging (global-batch values under DDP)
  and collapse monitors (``monitor/<name>_std``, ``_rankme``, ``_clip_std``);
* ``configure_model`` (FSDP2 sharding of ``sharded_modules()``, ``jepa.training.distributed``);
* the non-finite guard (``jepa.methods.nonfinite``: stop or skip a NaN/Inf step).

A subclass calls ``save_hyperparameters()`` (with the standard names ``lr``, ``start_lr``,
``final_lr``, ``warmup_fraction``, ``weight_decay``, ``final_weight_decay``, ``betas``,
``ema_momentum``, ``ema_schedule``, ``monitor_every``) and implements ``trained_modules``,
``training_step`` / ``validation_step`` around its own ``compute_loss``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from jepa.methods.nonfinite import NonFiniteGuard
from jepa.methods.schedules import WarmupCosineLRWD
from jepa.objectives.base import Regularizer, build_regularizer
from jepa.objectives.monitors import collapse_stats
from jepa.objectives.targets import TargetEncoder, momentum_at


def param_groups(modules: Mapping[str, nn.Module | None]) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on weight matrices only (not norms, biases, tokens, positions).

    ``modules`` maps a name to each trained module (names are for the reader; groups merge them
    in order; None entries are skipped).
    """
    decay, no_decay = [], []
    for module in modules.values():
        if module is None:
            continue
        skip = getattr(module, "no_weight_decay", lambda: set())()
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            if p.ndim <= 1 or name in skip or name.endswith(".bias"):
                no_decay.append(p)
            else:
                decay.append(p)
    return [
        {"params": decay, "wd_scale": 1.0},
        {"params": no_decay, "wd_scale": 0.0, "weight_decay": 0.0},
    ]


def check_hparams(hp: Mapping[str, Any]) -> None:
    """Optimiser settings every method shares: a bad value stops at construction, naming the key."""
    rules = {"lr": (lambda v: v >= 0, ">= 0"), "start_lr": (lambda v: v >= 0, ">= 0"),
             "final_lr": (lambda v: v >= 0, ">= 0"), "warmup_fraction": (lambda v: 0 <= v < 1, "in [0, 1)"),
             "weight_decay": (lambda v: v >= 0, ">= 0"), "final_weight_decay": (lambda v: v >= 0, ">= 0")}
    for key, (ok, allowed) in rules.items():
        if key in hp and hp[key] is not None and not ok(float(hp[key])):
            raise ValueError(f"model.init_args.{key} must be {allowed}, got {hp[key]}")


class JepaMethod(NonFiniteGuard):
    """Base LightningModule of the JEPA methods (see the module notes)."""

    # Set by the subclass's __init__ (no class-level defaults: they would shadow nn.Module's
    # submodule lookup).
    encoder: nn.Module | None
    target_encoder: TargetEncoder | None
    regularizer: Regularizer | None
    _last_batch_start: float | None = None

    # ----------------------------------------------------------------- what a method declares
    def trained_modules(self) -> dict[str, nn.Module | None]:
        """Modules whose parameters the optimiser trains, in a fixed order."""
        raise NotImplementedError

    def sharded_modules(self) -> dict[str, nn.Module | None]:
        """Networks FSDP shards as group roots (default: the trained ones that hold parameters,
        plus the EMA target)."""
        target = self.target_encoder.encoder if self.target_encoder is not None else None
        nets = {**self.trained_modules(), "target": target}
        return {k: m for k, m in nets.items() if m is not None and any(True for _ in m.parameters())}

    # ----------------------------------------------------------------- regulariser
    def set_regularizer(self, value: Regularizer | Mapping[str, Any] | None) -> None:
        """Build the regulariser from an instance or spec; its spec goes into the hyper-parameters
        as plain data (checkpoints load with ``weights_only=True``)."""
        self.regularizer = build_regularizer(value)
        self.hparams["regularizer"] = self.regularizer.spec() if self.regularizer is not None else None

    def regularize(self, z: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(weighted total, unweighted terms) of the regulariser on ``z [..., n, D]``."""
        if self.regularizer is None:
            return z.new_zeros((), dtype=torch.float32), {}
        return self.regularizer(z, step=int(self.global_step))

    # ----------------------------------------------------------------- optimiser and schedules
    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        betas = tuple(hp.get("betas") or (0.9, 0.999))
        opt = torch.optim.AdamW(param_groups(self.trained_modules()), lr=hp.lr, betas=betas, weight_decay=hp.weight_decay)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        sched = WarmupCosineLRWD(
            opt, total_steps=total, warmup_steps=int(hp.warmup_fraction * total), lr=hp.lr,
            start_lr=hp.start_lr, final_lr=hp.final_lr, weight_decay=hp.weight_decay,
            final_weight_decay=hp.final_weight_decay,
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "name": "opt"}}

    def ema_momentum(self, step: int) -> float:
        start, end = self.hparams.ema_momentum
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        return momentum_at(step, total, start, end, self.hparams.get("ema_schedule", "linear"))

    def after_optimizer_step(self) -> None:
        """Move the EMA target (once per real optimizer step)."""
        if self.target_encoder is not None:
            m = self.ema_momentum(self.trainer.global_step)
            self.target_encoder.update(self.encoder, m)
            self.log("ema/momentum", m)

    def configure_model(self) -> None:
        """Under ``--trainer.strategy fsdp``: shard Blocks and networks with FSDP2."""
        from jepa.training.distributed import shard_module

        shard_module(self, self.sharded_modules())

    # ----------------------------------------------------------------- logging
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        now = time.perf_counter()
        if self._last_batch_start is not None:
            self.log("perf/clips_per_s", batch["video"].shape[0] / max(now - self._last_batch_start, 1e-9))
        self._last_batch_start = now

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        opt = self.optimizers(use_pl_optimizer=False)
        self.log("opt/weight_decay", float(opt.param_groups[0]["weight_decay"]))

    def log_losses(self, stage: str, loss: torch.Tensor, terms: Mapping[str, torch.Tensor], batch_size: int) -> None:
        """``stage/loss`` and every ``*_loss`` term as global-batch values (synced under DDP);
        other terms are per-rank diagnostics under ``mask/``."""
        sync = stage != "train" or self.trainer.world_size > 1
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=batch_size, sync_dist=sync)
        for k, v in terms.items():
            if k.endswith("loss"):
                self.log(f"{stage}/{k}", v, batch_size=batch_size, sync_dist=sync)
            elif stage == "train":
                self.log(f"mask/{k}", v, batch_size=batch_size)

    def monitor_due(self) -> bool:
        return self.global_step % max(int(self.hparams.monitor_every), 1) == 0 and not self._skip_step

    def log_collapse(self, name: str, tokens: torch.Tensor, batch_size: int) -> None:
        """Collapse monitors of ``tokens [B, N, D]``: ``monitor/{name}_std``, ``_rankme``, ``_clip_std``."""
        for k, v in collapse_stats(tokens.detach()).items():
            self.log(f"monitor/{name}_{k}", v, batch_size=batch_size)
