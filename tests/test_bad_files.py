"""Bad input: every kind of broken file, under the skip policy (log once, count, replace) and the
strict policy (raise naming the file)."""

from __future__ import annotations

import logging
from pathlib import Path

import av
import numpy as np
import pytest
from torch.utils.data import DataLoader

from data_pipelines.dataset import VideoClipDataset, collate_clips
from data_pipelines.decoding import DecodeError, decode_all, open_video
from data_pipelines.sampling import ClipSampler
from data_pipelines.writers import write_manifest
from jepa.benchmarks.bad_files import BAD_KINDS, write_bad_file


def make_bad(kind: str, tmp: Path, good: Path) -> Path:
    """One bad file of ``kind``; returns its path."""
    if kind != "truncated_faststart":
        return write_bad_file(kind, tmp / f"{kind}.mp4", good)
    # The index first, then the media data cut short.
    from conftest import smooth_frames

    from data_pipelines.writers import write_video

    p = tmp / "faststart.mp4"
    full = tmp / "faststart_full.mp4"
    write_video(full, smooth_frames(40), 25, gop=8)
    with av.open(str(full)) as src, av.open(str(tmp / "fs.mp4"), "w", options={"movflags": "faststart"}) as dst:
        s_in = src.streams.video[0]
        s_out = dst.add_stream_from_template(s_in)
        for pkt in src.demux(s_in):
            if pkt.dts is None:
                continue
            pkt.stream = s_out
            dst.mux(pkt)
    data = (tmp / "fs.mp4").read_bytes()
    p.write_bytes(data[: int(len(data) * 0.6)])
    return p


# The index is intact in a cut-off faststart file; the cut-off packet fails to decode.
EXPECTED = {**BAD_KINDS, "truncated_faststart": "corrupt"}

FULL_CLIP = ClipSampler(num_frames=40, frame_step=1, mode="uniform")  # touches every frame


@pytest.fixture()
def good_videos(make_video) -> list[Path]:
    return [make_video(f"good{i}.mp4", t=40) for i in range(3)]


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_reader_raises_named_error(kind: str, tmp_path: Path, good_videos: list[Path]) -> None:
    bad = make_bad(kind, tmp_path, good_videos[0])
    with pytest.raises(DecodeError) as info, open_video(bad) as r:
        r.get_frames(FULL_CLIP(r.num_frames, r.fps).reshape(-1))
    assert info.value.kind == EXPECTED[kind]
    assert str(bad) in str(info.value)


def _manifest(tmp: Path, paths: list[Path]) -> Path:
    rows = [{"path": str(p), "label": i} for i, p in enumerate(paths)]
    write_manifest(tmp / "m.csv", rows)
    return tmp / "m.csv"


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_skip_policy_logs_once_counts_and_replaces(
    kind: str, tmp_path: Path, good_videos: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    bad = make_bad(kind, tmp_path, good_videos[0])
    with caplog.at_level(logging.WARNING, logger="data_pipelines.dataset"):
        ds = VideoClipDataset(_manifest(tmp_path, [bad, *good_videos]), FULL_CLIP)
        item = ds[0]
        again = ds[0]
    # Replaced by the next good file, which brings its own label and frames.
    assert item["index"] == again["index"] == 1 and int(item["label"]) == 1
    assert np.array_equal(item["video"][0].numpy(), decode_all(good_videos[0]))
    warnings = [r.getMessage() for r in caplog.records if str(bad) in r.getMessage()]
    assert len(warnings) == 1 and EXPECTED[kind] in warnings[0]
    assert ds.skip_count == 1 and ds.skipped_files() == {str(bad): EXPECTED[kind]}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_strict_policy_raises_with_file_name(kind: str, tmp_path: Path, good_videos: list[Path]) -> None:
    bad = make_bad(kind, tmp_path, good_videos[0])
    manifest = _manifest(tmp_path, [*good_videos, bad])
    if kind == "missing":  # caught when the dataset is built, before any training
        with pytest.raises(FileNotFoundError, match=str(bad)):
            VideoClipDataset(manifest, FULL_CLIP, bad_files="strict")
        return
    ds = VideoClipDataset(manifest, FULL_CLIP, bad_files="strict")
    assert ds[0]["index"] == 0
    with pytest.raises(DecodeError, match=str(bad)):
        ds[3]


def test_short_video_policies(tmp_path: Path, make_video) -> None:
    short = make_video("short.mp4", t=10)
    good = make_video("long.mp4", t=40)
    m = _manifest(tmp_path, [short, good])
    sampler = ClipSampler(num_frames=8, frame_step=2)
    skip = VideoClipDataset(m, sampler)
    assert skip[0]["index"] == 1 and skip.skipped_files() == {str(short): "too_short"}
    with pytest.raises(DecodeError, match="short.mp4.*10 frames, a clip needs 15"):
        VideoClipDataset(m, sampler, bad_files="strict")[0]
    pad = VideoClipDataset(m, ClipSampler(num_frames=8, frame_step=2, short_videos="pad"))
    item = pad[0]
    assert item["frame_indices"].tolist() == [[0, 2, 4, 6, 8, 8, 8, 8]]
    assert np.array_equal(item["video"][0].numpy(), decode_all(short)[[0, 2, 4, 6, 8, 8, 8, 8]])


def test_all_bad_stops_with_clear_error(tmp_path: Path, good_videos: list[Path]) -> None:
    bad = [make_bad(k, tmp_path, good_videos[0]) for k in ("empty", "not_media", "corrupt")]
    ds = VideoClipDataset(_manifest(tmp_path, bad), FULL_CLIP)
    with pytest.raises(RuntimeError, match="all 3 videos failed to decode.*empty"):
        ds[0]


def test_missing_files_in_manifest(tmp_path: Path, good_videos: list[Path]) -> None:
    with pytest.raises(FileNotFoundError, match="none of its 2 files exist.*nope0.mp4"):
        VideoClipDataset(_manifest(tmp_path, [tmp_path / "nope0.mp4", tmp_path / "nope1.mp4"]))


def test_skip_count_is_shared_across_workers(tmp_path: Path, good_videos: list[Path]) -> None:
    bad = [make_bad(k, tmp_path, good_videos[0]) for k in ("empty", "not_media", "corrupt", "audio_only")]
    ds = VideoClipDataset(_manifest(tmp_path, [*bad, *good_videos]), FULL_CLIP)
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate_clips)
    batches = list(loader)
    assert sum(len(b["index"]) for b in batches) == len(ds)  # every item still delivered
    assert all(int(i) >= 4 for b in batches for i in b["index"])  # only good files
    assert ds.skip_count == 4  # seen from the main process
    assert set(ds.skipped_files()) == {str(p) for p in bad}


def test_batches_mix_sizes_and_replacements(tmp_path: Path, make_video) -> None:
    """Batch decoding (``__getitems__``): one shared buffer when sizes agree; padding with the
    true frame sizes when they don't; a bad file inside a batch is replaced in place."""
    from conftest import smooth_frames

    from data_pipelines.writers import write_video

    big = tmp_path / "big.mp4"
    write_video(big, smooth_frames(40, h=64, w=80), 25, gop=8)
    small = [make_video(f"s{i}.mp4", t=40) for i in range(3)]  # 48 x 64
    bad = make_bad("not_media", tmp_path, small[0])
    paths = [small[0], bad, small[1], big, small[2]]
    ds = VideoClipDataset(_manifest(tmp_path, paths), ClipSampler(num_frames=4, frame_step=3))
    loader = DataLoader(ds, batch_size=5, num_workers=1, collate_fn=collate_clips)
    batch = next(iter(loader))
    assert batch["video"].shape == (5, 4, 64, 80, 3)
    assert batch["index"].tolist() == [0, 2, 2, 3, 4]  # the bad file replaced by the next good one
    assert batch["frame_size"].tolist() == [[48, 64]] * 3 + [[64, 80], [48, 64]]
    for b, i in enumerate(batch["index"].tolist()):
        h, w = batch["frame_size"][b].tolist()
        ref = decode_all(paths[i])[batch["frame_indices"][b].numpy()]
        assert np.array_equal(batch["video"][b, :, :h, :w].numpy(), ref)
        assert not batch["video"][b, :, h:, :].any() and not batch["video"][b, :, :, w:].any()
    same = DataLoader(
        VideoClipDataset(_manifest(tmp_path, small), ClipSampler(num_frames=4, frame_step=3)),
        batch_size=3, num_workers=1, collate_fn=collate_clips,
    )
    batch = next(iter(same))
    assert batch["video"].shape == (3, 4, 48, 64, 3) and type(batch).__name__ == "ClipBatch"
    for b in range(3):
        ref = decode_all(small[b])[batch["frame_indices"][b].numpy()]
        assert np.array_equal(batch["video"][b].numpy(), ref)
