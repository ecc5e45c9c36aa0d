"""End to end (slow): the demo's path on a few hundred generated videos, then a full epoch of
training batches through a real Lightning Trainer with worker processes."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
from test_datamodule import Recorder

from data_pipelines.datamodule import VideoDataModule
from jepa.training.cli import main


@pytest.mark.slow
def test_synth_check_inspect_and_train_an_epoch(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "ms"
    assert main(["data", "synth", "moving-shapes", "--out", str(data), "--videos", "300"]) == 0
    assert main(["data", "check", str(data / "train.csv"), "--num-frames", "16", "--strict"]) == 0
    assert "240 ok, 0 bad" in capsys.readouterr().out
    assert main(["data", "inspect", str(data / "train.csv"), "--device", "cpu"]) == 0
    assert "(8, 3, 16, 64, 64)" in capsys.readouterr().out

    dm = VideoDataModule(
        train=str(data / "train.csv"), val=str(data / "val.csv"), num_frames=16, frame_step=2,
        crop_size=64, batch_size=16, num_workers=2,
    )
    model = Recorder()
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )
    trainer.fit(model, dm)
    assert len(model.seen["train"]) == 240 // 16 and len(model.seen["val"]) == -(-60 // 16)
    seen = {int(i) for b in model.seen["train"] for i in b["index"][2]}
    assert len(seen) == 240  # every training video exactly once per epoch
    assert dm.skip_count == 0
