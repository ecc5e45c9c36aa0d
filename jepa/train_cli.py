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


class JepaCLI(LightningCLI):
    """LightningCLI with the project's loggers and callbacks filled in when a recipe has none."""

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        trainer = cfg["trainer"]
        root = trainer.get("default_root_dir") or "outputs/run"
        if trainer.get("logger") in (None, True):
            trainer["logger"] = [
                _ns("lightning.pytorch.loggers.CSVLogger", save_dir=root, name="csv"),
                _ns("lightning.pytorch.loggers.WandbLogger", save_dir=root, project="jepa", offline=True),
            ]
        if not trainer.get("callbacks"):
            trainer["callbacks"] = [
                _ns(
                    "lightning.pytorch.callbacks.ModelCheckpoint", dirpath=os.path.join(root, "checkpoints"),
                    filename="best-{epoch}-{step}", monitor="val/loss", mode="min", save_top_k=1, save_last=True,
                ),
                _ns("lightning.pytorch.callbacks.LearningRateMonitor", logging_interval="step"),
            ]


def _ns(class_path: str, **init_args: Any) -> Any:
    from jsonargparse import Namespace

    return Namespace(class_path=class_path, init_args=Namespace(**init_args))


def run(argv: Sequence[str]) -> int:
    """Run a LightningCLI subcommand (``fit``, ``validate``) with ``argv`` after ``jepa``."""
    import sys

    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_MODE", "offline")
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
