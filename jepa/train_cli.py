"""``jepa fit`` / ``jepa validate``: LightningCLI over any jepa LightningModule and DataModule.

    jepa fit --config configs/pretrain/quickstart.yaml
    jepa fit --config configs/pretrain/quickstart.yaml --trainer.max_epochs 1 --model.init_args.lr 1e-3
    jepa fit --config configs/pretrain/quickstart.yaml --print_config

A recipe names its classes (``model.class_path: jepa.pretrain.VideoJEPA``,
``data.class_path: data_pipelines.datamodule.VideoDataModule``) so pretraining and world
models share one entry point. Defaults when a recipe leaves them out: wandb in offline mode
(no account or network needed; ``wandb sync`` later) plus a CSV logger under
``trainer.default_root_dir``, a checkpoint callback keeping ``last.ckpt`` and the best
``val/loss``, a learning-rate monitor, and fp32 on CPU / bf16-mixed on GPU.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import LightningCLI


def default_trainer() -> dict[str, Any]:
    """Trainer defaults a recipe may override."""
    return {
        "precision": "bf16-mixed" if torch.cuda.is_available() else "32-true",
        "default_root_dir": "outputs/run",
    }


CHECKPOINT = "lightning.pytorch.callbacks.ModelCheckpoint"
LR_MONITOR = "lightning.pytorch.callbacks.LearningRateMonitor"


class JepaCLI(LightningCLI):
    """LightningCLI that fills in the project's loggers and callbacks under ``default_root_dir``.

    Filled in after all overrides, so ``--trainer.default_root_dir DIR`` moves everything:
    ``logger`` unset -> CSV (``DIR/csv``) + offline wandb (``DIR/wandb``); no checkpoint
    callback -> ``last.ckpt`` (every epoch) and the best ``val/loss`` in ``DIR/checkpoints``
    (a recipe's own ModelCheckpoint without ``dirpath`` gets that folder too); an LR monitor.
    """

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        trainer = cfg["trainer"]
        root = trainer.get("default_root_dir") or "outputs/run"
        trainer["default_root_dir"] = root
        if trainer.get("logger") in (None, True):
            trainer["logger"] = [
                _ns("lightning.pytorch.loggers.CSVLogger", save_dir=root, name="csv"),
                _ns("lightning.pytorch.loggers.WandbLogger", save_dir=root, project="jepa", offline=True),
            ]
        callbacks = list(trainer.get("callbacks") or [])
        paths = [getattr(cb, "class_path", "") for cb in callbacks]
        if trainer.get("enable_checkpointing") is not False and CHECKPOINT not in paths:
            # Two callbacks: Lightning (2.6) writes ``save_last`` only when a top-k checkpoint was
            # saved in the same step, so one monitored callback would leave ``last.ckpt`` at the
            # best epoch and lose every later one.  ``last`` is an unmonitored top-1 under a fixed
            # name, rewritten every epoch.
            callbacks.append(_ns(CHECKPOINT, filename="last", monitor=None, save_top_k=1, save_last=False))
            callbacks.append(
                _ns(CHECKPOINT, filename="best-{epoch}-{step}", monitor="val/loss", mode="min", save_top_k=1,
                    save_last=False)
            )
        if LR_MONITOR not in paths and trainer.get("logger") is not False:  # it needs a logger
            callbacks.append(_ns(LR_MONITOR, logging_interval="step"))
        for cb in callbacks:
            if getattr(cb, "class_path", "") == CHECKPOINT and cb.init_args.get("dirpath") is None:
                cb.init_args["dirpath"] = os.path.join(root, "checkpoints")
        trainer["callbacks"] = callbacks


def _ns(class_path: str, **init_args: Any) -> Any:
    from jsonargparse import Namespace

    return Namespace(class_path=class_path, init_args=Namespace(**init_args))


def run(argv: Sequence[str]) -> int:
    """Run a LightningCLI subcommand (``fit``, ``validate``) with ``argv`` after ``jepa``."""
    import sys

    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_MODE", "offline")
    # Lightning warns about both; we pass argv on purpose, and the EMA target is eval by design.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    JepaCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=None if list(argv) == sys.argv[1:] else list(argv),
        trainer_defaults=default_trainer(),
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
    )
    return 0
