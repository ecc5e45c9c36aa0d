"""``TrajectoryDataModule``: clips with aligned actions for world-model training (LightningCLI ``data:``).

Batches: ``video`` uint8 ``[B, T, H, W, 3]``, ``actions`` float32 ``[B, T-1, k*A]``, ``states``
``[B, T, S]``, ``episode`` and ``start`` ``[B]``. The model normalises frames on its device.
``action_dim`` and ``action_stats()`` tell the model what it will see before training starts.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from data_pipelines.datamodule import check_at_least
from data_pipelines.resumable import TrainProgress
from data_pipelines.trajectories import TrajectoryClipDataset


class TrajectoryDataModule(L.LightningDataModule):
    """Args:
    train: trajectory manifest for training (``jepa data collect`` writes ``train.csv``).
    val: trajectory manifest for validation (optional).
    num_frames: frames per clip (T); T - 1 actions.
    frameskip: environment steps per clip step (actions concatenated, DINO-WM style).
    batch_size: clips per batch.
    preload: decode every episode once into memory (fast for small frames).
    num_workers: DataLoader workers (0 is right with ``preload``).
    stride: step between clip starts within an episode.
    seed: seed of the training order (``ResumableSampler``: epoch-seeded, sharded over ranks,
        resumed mid-epoch from checkpoints).
    shuffle: a new order every epoch (False: manifest order).
    """

    def __init__(
        self,
        train: str,
        val: str | None = None,
        num_frames: int = 4,
        frameskip: int = 1,
        batch_size: int = 64,
        preload: bool = True,
        num_workers: int = 0,
        stride: int = 1,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        super().__init__()
        check_at_least(num_frames=(num_frames, 2), frameskip=(frameskip, 1), batch_size=(batch_size, 1),
                       num_workers=(num_workers, 0), stride=(stride, 1))
        self.save_hyperparameters()
        self.progress = TrainProgress()
        self.train_set: TrajectoryClipDataset | None = None
        self.val_set: TrajectoryClipDataset | None = None

    def _dataset(self, manifest: str) -> TrajectoryClipDataset:
        hp = self.hparams
        return TrajectoryClipDataset(manifest, hp.num_frames, hp.frameskip, hp.preload, hp.stride)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None and stage in (None, "fit"):
            self.train_set = self._dataset(self.hparams.train)
        if self.val_set is None and self.hparams.val and stage in (None, "fit", "validate"):
            self.val_set = self._dataset(self.hparams.val)

    @property
    def action_dim(self) -> int:
        if self.train_set is None:
            self.setup("fit")
        assert self.train_set is not None
        return self.train_set.action_dim

    def action_stats(self) -> tuple[np.ndarray, np.ndarray]:
        if self.train_set is None:
            self.setup("fit")
        assert self.train_set is not None
        return self.train_set.action_stats()

    def _loader(self, dataset: TrajectoryClipDataset, train: bool) -> DataLoader:
        hp = self.hparams
        drop_last = train and len(dataset) >= hp.batch_size
        sampler = None
        if train:  # epoch-seeded, rank-sharded, resumable mid-epoch (data_pipelines.resumable)
            sampler = self.progress.sampler(len(dataset), self.trainer, hp.shuffle, hp.seed, hp.batch_size, drop_last, False)
        return DataLoader(
            dataset,
            batch_size=hp.batch_size,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=hp.num_workers,
            persistent_workers=hp.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            self.setup("fit")
        assert self.train_set is not None
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        if self.val_set is None:
            self.setup("validate")
        if self.val_set is None:
            raise ValueError("no validation data: set data.init_args.val to a trajectory manifest")
        return self._loader(self.val_set, train=False)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.trainer is not None and self.trainer.training:
            self.progress.step(self.trainer.current_epoch)
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"train_progress": self.progress.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "train_progress" in state_dict:
            self.progress.load_state_dict(state_dict["train_progress"])
