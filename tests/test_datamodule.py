"""The DataModule end to end under a real Lightning Trainer: workers decode, the batch crosses to
the device as uint8, and the device transform turns it into normalised float clips."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch

from data_pipelines.datamodule import VideoDataModule
from data_pipelines.dataset import VideoClipDataset
from data_pipelines.decoding import decode_all
from data_pipelines.sampling import ClipSampler


class Recorder(L.LightningModule):
    """A tiny real model that trains on the batches and records what it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Conv3d(3, 4, kernel_size=(2, 8, 8), stride=(2, 8, 8))
        self.head = torch.nn.Linear(4, 8)
        self.seen: dict[str, list[dict[str, object]]] = {"train": [], "val": []}

    def _record(self, stage: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self.seen[stage].append({k: (v.shape, v.dtype, v.clone()) for k, v in batch.items()})
        feats = self.net(batch["video"]).mean(dim=(2, 3, 4))
        return torch.nn.functional.cross_entropy(self.head(feats), batch["direction"])

    def training_step(self, batch: dict[str, torch.Tensor], idx: int) -> torch.Tensor:
        return self._record("train", batch)

    def validation_step(self, batch: dict[str, torch.Tensor], idx: int) -> None:
        self.log("val_loss", self._record("val", batch), batch_size=len(batch["video"]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _trainer(**kw) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, **kw,
    )


def test_batches_through_a_real_trainer(synth_dir: Path) -> None:
    dm = VideoDataModule(
        train=str(synth_dir / "train.csv"), val=str(synth_dir / "val.csv"), num_frames=8,
        frame_step=2, crop_size=32, batch_size=4, num_workers=2, clips_per_video=2,
        val_clips_per_video=2,
    )
    model = Recorder()
    _trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=1, num_sanity_val_steps=0).fit(model, dm)
    assert len(model.seen["train"]) == 3 and len(model.seen["val"]) == 1
    for stage in ("train", "val"):
        batch = model.seen[stage][0]
        assert batch["video"][0] == (8, 3, 8, 32, 32) and batch["video"][1] == torch.float32
        assert batch["frame_indices"][0] == (8, 8)
        assert batch["direction"][1] == torch.int64 and batch["angle"][1] == torch.float32
        index = batch["index"][2]
        assert torch.equal(index[0::2], index[1::2])  # two clips per video, labels repeated
        assert abs(float(batch["video"][2].mean())) < 1.5  # normalised
    # Validation clips are evenly spaced (first at 0, last ending on the last frame) and
    # the eval transform is deterministic.
    val = model.seen["val"][0]
    frames = val["frame_indices"][2]
    assert frames[0, 0] == 0 and frames[1, -1] == 31
    dm2 = VideoDataModule(
        train=str(synth_dir / "train.csv"), val=str(synth_dir / "val.csv"), num_frames=8,
        frame_step=2, crop_size=32, batch_size=4, num_workers=0, val_clips_per_video=2,
    )
    dm2.setup("fit")
    raw = next(iter(dm2.val_dataloader()))
    again = dm2.apply_transform({k: v.clone() for k, v in raw.items()}, train=False)
    assert torch.allclose(again["video"], val["video"][2])
    assert dm.skip_count == 0


def test_clips_are_the_indexed_frames(synth_dir: Path) -> None:
    ds = VideoClipDataset(synth_dir / "manifest.csv", ClipSampler(num_frames=6, frame_step=3, clips_per_video=2))
    for i in (0, 5, 11):
        item = ds[i]
        ref = decode_all(ds.source.paths[i])
        for k in range(2):
            assert np.array_equal(item["video"][k].numpy(), ref[item["frame_indices"][k].numpy()])


def test_seeded_augmentation_and_state_dict(synth_dir: Path) -> None:
    kw = dict(train=str(synth_dir / "train.csv"), num_frames=4, crop_size=16, num_workers=0)
    video = torch.randint(0, 256, (6, 4, 64, 64, 3), dtype=torch.uint8)

    def augment(dm: VideoDataModule) -> torch.Tensor:
        return dm.apply_transform({"video": video.clone()}, train=True)["video"]

    a, b, c = (VideoDataModule(**kw, seed=s) for s in (1, 1, 2))
    for dm in (a, b, c):
        dm.setup("fit")
    xa, xb, xc = augment(a), augment(b), augment(c)
    assert torch.equal(xa, xb) and not torch.equal(xa, xc)
    # A checkpointed generator state continues the same augmentation stream.
    state = a.state_dict()
    c.load_state_dict(state)
    assert torch.equal(augment(a), augment(c))
