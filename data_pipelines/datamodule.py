"""``VideoDataModule``: manifests -> CPU decoding workers -> pinned uint8 batches -> device transforms.

Decoding and clip sampling run in DataLoader workers; uint8 clips cross to the device
(pinned, non-blocking on CUDA: 4x less traffic than float), and ``on_after_batch_transfer``
applies the random-resized-crop/flip (training) or centre-crop (evaluation) transform there,
turning ``batch["video"]`` into normalised float ``[B, 3, T, h, w]``.

Training order comes from ``ResumableSampler`` (one epoch-seeded permutation dealt to the
ranks, so the global batch is the same at any world size; clip starts seeded per
(epoch, video)); the batches taken so far in the epoch, and the transform generator (seeded
``seed + global_rank``, so ranks draw different augmentations) are saved in checkpoints, so a
run resumed mid-epoch sees exactly the batches an uninterrupted run would have.

Every ``__init__`` argument is a LightningCLI config key (``jepa fit --print_config`` lists them).
"""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
from torch.utils.data import DataLoader

from data_pipelines.batching import SLOT_KEY
from data_pipelines.dataset import VideoClipDataset, collate_clips
from data_pipelines.resumable import TrainProgress
from data_pipelines.sampling import ClipSampler
from data_pipelines.sources import VideoSource, load_source
from data_pipelines.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CenterCropVideo,
    RandomResizedCropVideo,
)


def check_at_least(**values: tuple[int, int]) -> None:
    """``name=(value, minimum)``: raise naming the first ``data.init_args`` key below its minimum."""
    for name, (value, least) in values.items():
        if value is not None and value < least:
            raise ValueError(f"data.init_args.{name} must be >= {least}, got {value}")


class VideoDataModule(L.LightningDataModule):
    """Video clips for training and validation.

    Args:
        train: training manifest CSV or folder of videos.
        val: validation manifest or folder (optional).
        num_frames: frames per clip.
        frame_step: source frames between clip frames (ignored when ``fps`` is set).
        fps: sample clips at this frame rate instead of a fixed step.
        clips_per_video: clips drawn from each training video per item.
        val_clips_per_video: evenly spaced clips per validation video (multi-view evaluation).
        crop_size: output frame size (square).
        short_side: resize at decode time so the shorter side is at most this (None: keep).
        batch_size: videos per batch (a batch holds ``batch_size * clips_per_video`` clips).
        num_workers: DataLoader decoding processes.
        pin_memory: pin host batches (only takes effect when CUDA is available).
        persistent_workers: keep workers alive across epochs.
        scale: random-resized-crop area range.
        ratio: random-resized-crop aspect range.
        hflip_prob: horizontal flip probability.
        eval_crop_fraction: centre-crop fraction of the evaluation transform.
        mean: normalisation mean (RGB, 0-1 scale).
        std: normalisation std.
        bad_files: "skip" (log, count, replace) or "strict" (raise on the first bad file).
            ``jepa fit`` logs the skip count as ``data/skipped_files`` (``jepa.training.callbacks``).
        short_videos: "skip" or "pad" for videos shorter than one clip.
        backend: decoding backend, "pyav" or "torchcodec".
        decode_threads: decoder threads per worker.
        seed: seed of the training order, the clip starts, and (offset by the global rank) the
            device-side augmentation generator.
        shuffle: a new order of the training videos every epoch (False: manifest order).
    """

    def __init__(
        self,
        train: str,
        val: str | None = None,
        num_frames: int = 16,
        frame_step: int = 2,
        fps: float | None = None,
        clips_per_video: int = 1,
        val_clips_per_video: int = 1,
        crop_size: int = 64,
        short_side: int | None = None,
        batch_size: int = 8,
        num_workers: int = 2,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        scale: tuple[float, float] = (0.3, 1.0),
        ratio: tuple[float, float] = (0.75, 1.35),
        hflip_prob: float = 0.5,
        eval_crop_fraction: float = 0.875,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        bad_files: Literal["skip", "strict"] = "skip",
        short_videos: Literal["skip", "pad"] = "skip",
        backend: Literal["pyav", "torchcodec"] = "pyav",
        decode_threads: int = 1,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        super().__init__()
        check_at_least(num_frames=(num_frames, 1), frame_step=(frame_step, 1), clips_per_video=(clips_per_video, 1),
                       val_clips_per_video=(val_clips_per_video, 1), crop_size=(crop_size, 1),
                       batch_size=(batch_size, 1), num_workers=(num_workers, 0), decode_threads=(decode_threads, 1))
        self.save_hyperparameters()
        self.train_transform = RandomResizedCropVideo(crop_size, scale, ratio, hflip_prob, mean, std)
        self.eval_transform = CenterCropVideo(crop_size, eval_crop_fraction, mean, std)
        self.generator = torch.Generator().manual_seed(seed)
        self.train_set: VideoClipDataset | None = None
        self.val_set: VideoClipDataset | None = None
        self._seeded = False
        self._prefetch = 4  # batches in flight per worker
        self._pending_slot: tuple[VideoClipDataset, dict[str, Any]] | None = None
        self.progress = TrainProgress()

    def _dataset(self, source: str | VideoSource, clips: int, mode: str, vocab: Any = None) -> VideoClipDataset:
        hp = self.hparams
        sampler = ClipSampler(
            hp.num_frames, hp.frame_step, hp.fps, clips, mode, hp.short_videos  # type: ignore[arg-type]
        )
        return VideoClipDataset(
            source,
            sampler,
            bad_files=hp.bad_files,
            short_side=hp.short_side,
            backend=hp.backend,
            decode_threads=hp.decode_threads,
            vocab=vocab,
            seed=hp.seed,
        )

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if not self._seeded:
            rank = self.trainer.global_rank if self.trainer is not None else 0
            self.generator.manual_seed(hp.seed + rank)
            self._seeded = True
        if self.train_set is None:
            self.train_set = self._dataset(hp.train, hp.clips_per_video, "random")
        if hp.val is not None and self.val_set is None:
            # Categorical labels of the validation set use the training set's class indices.
            vocab = self.train_set.source.vocab
            val_source = load_source(hp.val, vocab)
            self.val_set = self._dataset(val_source, hp.val_clips_per_video, "uniform", vocab)

    def _loader(self, dataset: VideoClipDataset, train: bool) -> DataLoader:
        hp = self.hparams
        if hp.num_workers > 0:
            # Batch buffers the workers reuse once on_after_batch_transfer has consumed them.
            dataset.reuse_buffers(self._prefetch + 3)
        sampler = None
        if train:
            sampler = self.progress.sampler(
                len(dataset), self.trainer, hp.shuffle, hp.seed, hp.batch_size, drop_last=True, keyed=True
            )
        return DataLoader(
            dataset,
            batch_size=hp.batch_size,
            sampler=sampler,
            drop_last=train,
            num_workers=hp.num_workers,
            collate_fn=collate_clips,
            pin_memory=hp.pin_memory and torch.cuda.is_available(),
            persistent_workers=hp.persistent_workers and hp.num_workers > 0,
            prefetch_factor=self._prefetch if hp.num_workers > 0 else None,
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
            raise ValueError("no validation data: set `val` (a manifest or folder) on the data module")
        return self._loader(self.val_set, train=False)

    def on_before_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """Runs on the host: take the buffer slot off the batch (the model never sees it)."""
        training = self.trainer is not None and self.trainer.training
        if training:
            self.progress.step(self.trainer.current_epoch)
        if SLOT_KEY in batch:
            dataset = self.train_set if training else self.val_set
            if dataset is not None:
                self._pending_slot = (dataset, {SLOT_KEY: batch.pop(SLOT_KEY)})
        return batch

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """Runs on the device: uint8 ``[B, T, H, W, 3]`` -> float ``[B, 3, T, h, w]``."""
        training = self.trainer is not None and self.trainer.training
        batch = self.apply_transform(batch, train=training)
        if self._pending_slot is not None:
            # The uint8 clips have been read (copied to the device, or transformed into a new
            # tensor): the worker may reuse their buffer.
            dataset, slot = self._pending_slot
            dataset.release(slot)
            self._pending_slot = None
        return batch

    def apply_transform(self, batch: dict[str, Any], train: bool) -> dict[str, Any]:
        """The device transform, usable outside a Trainer (e.g. ``jepa data inspect``)."""
        video, size = batch["video"], batch.get("frame_size")
        if train:
            batch["video"] = self.train_transform(video, size, self.generator)
        else:
            batch["video"] = self.eval_transform(video, size)
        return batch

    @property
    def skip_count(self) -> int:
        """Bad files skipped so far in the training and validation sets."""
        return sum(d.skip_count for d in (self.train_set, self.val_set) if d is not None)

    def state_dict(self) -> dict[str, Any]:
        return {"transform_rng": self.generator.get_state(), "train_progress": self.progress.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "transform_rng" in state_dict:
            self.generator.set_state(state_dict["transform_rng"])
            self._seeded = True  # setup() must not reseed the restored generator
        if "train_progress" in state_dict:
            self.progress.load_state_dict(state_dict["train_progress"])
