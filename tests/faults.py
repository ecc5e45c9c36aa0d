"""Fault injection and per-rank state dumps for the distributed and fault-tolerance tests.

These are Lightning callbacks that ``jepa fit`` subprocesses load by class path
(``PYTHONPATH`` includes ``tests/``); they act on the real trainer, model and data module.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback


class SignalAtStep(Callback):
    """Send ``signame`` to this process once ``global_step`` reaches ``step`` (after the step)."""

    def __init__(self, step: int, signame: str = "SIGKILL") -> None:
        self.step, self.signame = step, signame

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), getattr(signal, self.signame))


class NaNAtStep(Callback):
    """Make the loss NaN at the given optimizer steps, or at the given training batches
    (``micro_batches``, counted from 0 over the run), by poisoning the input clips."""

    def __init__(self, steps: list[int] | None = None, micro_batches: list[int] | None = None) -> None:
        self.steps, self.micro = set(steps or []), set(micro_batches or [])
        self.seen = 0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if trainer.global_step in self.steps or self.seen in self.micro:
            batch["video"] = batch["video"] * float("nan")
        self.seen += 1


class DumpRankState(Callback):
    """Write each rank's EMA target weights and generator states to ``out/rank{r}.pt`` at the end,
    and its first mask draw / augmentation generator state at the start."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)
        self.start: dict[str, Any] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = trainer.datamodule
        self.start = {
            "mask_rng": pl_module.mask_generator.get_state().clone(),
            "transform_rng": dm.generator.get_state().clone(),
            "world_size": trainer.world_size,
            "num_nodes": trainer.num_nodes,
        }

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        target = pl_module.target_encoder
        state = {k: v.detach().cpu().clone() for k, v in target.state_dict().items()} if target is not None else {}
        online = {k: v.detach().cpu().clone() for k, v in pl_module.encoder.state_dict().items()}
        torch.save({"target": state, "online": online, **self.start}, self.out / f"rank{trainer.global_rank}.pt")


class RecordBatches(Callback):
    """Append each training batch's ``index`` (or ``episode``/``start``) to ``out/rank{r}.txt``."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        keys = batch.get("index")
        if keys is None:
            keys = torch.stack([batch["episode"], batch["start"]], 1).tolist()
        else:
            keys = keys.tolist()
        with open(self.out / f"rank{trainer.global_rank}.txt", "a") as f:
            f.write(f"{trainer.global_step} {keys}\n")
