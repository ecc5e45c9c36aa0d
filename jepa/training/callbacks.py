"""Training-time monitors of the input data.

``SkippedFilesMonitor`` logs ``data/skipped_files``, the number of distinct files the data
pipeline has skipped so far (``bad_files: skip``; the table is shared by all DataLoader
workers), and prints a line at the end of an epoch in which the count grew, so a long run that
survives bad files still says how many it lost. ``jepa fit`` adds it by default.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback


class SkippedFilesMonitor(Callback):
    """Log the data module's ``skip_count`` every ``log_every_n_steps`` and report growth per epoch."""

    def __init__(self) -> None:
        self._reported = 0

    @staticmethod
    def count(trainer: L.Trainer) -> int | None:
        dm = getattr(trainer, "datamodule", None)
        n = getattr(dm, "skip_count", None)
        return int(n) if n is not None else None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        n = self.count(trainer)
        if n is not None and trainer.global_step % max(trainer.log_every_n_steps, 1) == 0:
            pl_module.log("data/skipped_files", float(n), reduce_fx="max")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        n = self.count(trainer)
        if n is not None and n > self._reported and trainer.is_global_zero:
            print(f"[jepa] epoch {trainer.current_epoch}: {n} bad files skipped so far "
                  "(each was logged once with its reason; data/skipped_files in the logs)", flush=True)
            self._reported = n
