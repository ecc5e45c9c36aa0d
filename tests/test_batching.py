"""Batch memory: buffers reused only after release, never overwritten while held; compact
pickling of batches between processes."""

from __future__ import annotations

import io
import pickle
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from data_pipelines.batching import SLOT_KEY, ClipBatch
from data_pipelines.dataset import VideoClipDataset, collate_clips
from data_pipelines.decoding import decode_all
from data_pipelines.sampling import ClipSampler


def _check(ds: VideoClipDataset, batch: dict, refs: dict[int, np.ndarray]) -> None:
    for b, i in enumerate(batch["index"].tolist()):
        ref = refs[i][batch["frame_indices"][b].numpy()]
        assert np.array_equal(batch["video"][b].numpy(), ref), (b, i)


def _setup(synth_dir: Path) -> tuple[VideoClipDataset, dict[int, np.ndarray]]:
    ds = VideoClipDataset(synth_dir / "manifest.csv", ClipSampler(num_frames=4, frame_step=5))
    refs = {i: decode_all(p) for i, p in enumerate(ds.source.paths)}
    return ds, refs


def _loader(ds: VideoClipDataset) -> DataLoader:
    return DataLoader(
        ds, batch_size=4, shuffle=True, num_workers=1, collate_fn=collate_clips,
        prefetch_factor=2, persistent_workers=True,
    )


def test_released_buffers_are_reused(synth_dir: Path) -> None:
    ds, refs = _setup(synth_dir)
    ring = ds.reuse_buffers(slots=3)
    loader = _loader(ds)
    slots = []
    for _ in range(3):
        for batch in loader:
            _check(ds, batch, refs)  # read it, then hand the buffer back
            slots.append(int(batch[SLOT_KEY]))
            ds.release(batch)
    assert len(slots) == 18 and set(slots) <= {0, 1, 2}
    assert ring.taken() == 0


def test_held_batches_are_never_overwritten(synth_dir: Path) -> None:
    ds, refs = _setup(synth_dir)
    ring = ds.reuse_buffers(slots=2)
    loader = _loader(ds)
    held = [batch for _ in range(2) for batch in loader]  # nothing released
    assert len(held) == 12 and sum(SLOT_KEY in b for b in held) == 2  # then fresh memory
    for batch in held:
        _check(ds, batch, refs)
    assert ring.taken() == 2


def test_clip_batch_pickles_small_fields_inline() -> None:
    batch = ClipBatch(
        video=torch.zeros(2, 3, 4, 4, 3, dtype=torch.uint8),
        index=torch.tensor([3, 4]),
        angle=torch.tensor([1.5, 2.5]),
    )
    buf = io.BytesIO()
    ForkingPickler(buf, pickle.HIGHEST_PROTOCOL).dump(batch)
    again = pickle.loads(buf.getvalue())
    assert type(again) is ClipBatch and list(again) == ["video", "index", "angle"]
    assert torch.equal(again["angle"], batch["angle"]) and again["index"].dtype == torch.int64
