"""Frame-exact decoding: clips equal the same frames of a full sequential decode."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import smooth_frames

from data_pipelines.decoding import PyAVReader, decode_all, open_video
from data_pipelines.sampling import ClipSampler


@pytest.mark.parametrize(
    "indices",
    [
        [0, 1, 2, 3],
        [6, 7, 8, 9, 10],  # across the keyframe at 8
        list(range(3, 60, 3)),  # frame_step 3 over many GOPs
        list(range(5, 37, 4)),  # frame_step 4, starting mid-GOP
        [57, 58, 59, 60],  # the last frames
        [40, 2, 40, 17],  # unsorted with repeats
        [1, 59],  # far apart: two seeks
        list(range(61)),
    ],
)
@pytest.mark.parametrize("threads,skip", [(1, True), (1, False), (3, True)])
def test_exact_indices_match_full_decode(
    gop_video: Path, indices: list[int], threads: int, skip: bool
) -> None:
    ref = decode_all(gop_video)
    with PyAVReader(gop_video, threads=threads, skip_unneeded=skip) as r:
        assert r.num_frames == 61 and r.fps == 25
        got = r.get_frames(indices)
    assert got.dtype == np.uint8 and got.shape == (len(indices), 48, 64, 3)
    assert np.array_equal(got, ref[indices])


def test_random_clips_match_full_decode(gop_video: Path) -> None:
    ref = decode_all(gop_video)
    sampler = ClipSampler(num_frames=8, frame_step=3, clips_per_video=3)
    with PyAVReader(gop_video) as r:
        for _ in range(10):
            idx = sampler(r.num_frames, r.fps)
            assert np.array_equal(r.get_frames(idx.reshape(-1)), ref[idx.reshape(-1)])


@pytest.mark.parametrize(
    "codec,suffix",
    [
        ("libx264", "mp4"),
        ("libx264", "mkv"),
        ("libvpx-vp9", "webm"),
        ("libsvtav1", "mkv"),
        ("mpeg4", "avi"),
        ("libx265", "mp4"),
    ],
)
def test_codecs_and_containers(make_video, codec: str, suffix: str) -> None:
    path = make_video(f"clip.{suffix}", t=40, codec=codec)
    ref = decode_all(path)
    assert len(ref) == 40
    src = smooth_frames(40)
    assert np.abs(ref.astype(float) - src).mean() < 12, "decoded content should match the source"
    with open_video(path) as r:
        assert (r.num_frames, r.height, r.width) == (40, 48, 64)
        idx = [3, 5, 7, 9, 11, 13, 30, 39]
        assert np.array_equal(r.get_frames(idx), ref[idx])


def _write_vfr(path: Path, gaps: list[int]) -> np.ndarray:
    """An mp4 whose frame durations vary (in ms): a variable-frame-rate file."""
    frames = smooth_frames(len(gaps) + 1)
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        s.options = {"g": "8", "threads": "1"}
        pts = 0
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts, vf.time_base = pts, s.codec_context.time_base
            pts += gaps[i] if i < len(gaps) else 0
            for p in s.encode(vf):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return frames


def test_variable_frame_rate_is_positional(tmp_path: Path) -> None:
    path = tmp_path / "vfr.mp4"
    gaps = [20, 45, 33, 80, 20, 20, 60] * 5
    _write_vfr(path, gaps)
    ref = decode_all(path)
    with PyAVReader(path) as r:
        idx = [2, 3, 4, 5, 17, 30, 35]
        assert np.array_equal(r.get_frames(idx), ref[idx])
        assert r.num_frames == len(ref) == len(gaps) + 1
        assert 15 < r.fps < 40  # the average rate


def test_resize_at_decode(gop_video: Path) -> None:
    ref = decode_all(gop_video)
    with PyAVReader(gop_video, short_side=24) as r:
        got = r.get_frames([0, 10])
    assert got.shape == (2, 24, 32, 3)
    # Same content at lower resolution: compare against a 2x2 box-downsampled reference.
    small = ref[[0, 10]].reshape(2, 24, 2, 32, 2, 3).astype(float).mean(axis=(2, 4))
    assert np.abs(got - small).mean() < 2


def test_sampler_fps_uniform_and_short() -> None:
    s = ClipSampler(num_frames=4, fps=12.5, mode="uniform", clips_per_video=3)
    idx = s(100, video_fps=25.0)
    assert (np.diff(idx, axis=1) == 2).all()
    assert idx[0, 0] == 0 and idx[-1, -1] == 99 and idx[1, 0] == (99 - 6) // 2
    r = ClipSampler(num_frames=5, frame_step=3)
    for _ in range(50):
        i = r(20)
        assert i.min() >= 0 and i.max() <= 19 and (np.diff(i) == 3).all()
    pad = ClipSampler(num_frames=6, frame_step=2, short_videos="pad")(7)
    assert pad.tolist() == [[0, 2, 4, 6, 6, 6]]
    with pytest.raises(Exception, match="too_short.*7 frames, a clip needs 11"):
        ClipSampler(num_frames=6, frame_step=2)(7, path="v.mp4")


def test_old_import_paths_expose_the_same_objects() -> None:
    """``data_pipelines.decode`` / ``.torchcodec_backend`` / ``synth``'s writers still import and
    re-export the moved objects themselves (no copies); torchcodec need not be installed."""
    import data_pipelines.decode as old
    import data_pipelines.decoding as new
    import data_pipelines.decoding.torchcodec as new_tc
    import data_pipelines.synth as synth
    import data_pipelines.torchcodec_backend as old_tc
    import data_pipelines.writers as writers
    from data_pipelines.decoding import common

    for name in ("DecodeError", "open_video", "PyAVReader", "VideoReader", "VIDEO_EXTENSIONS",
                 "ERROR_KINDS", "check_file", "decode_all", "frame_to_rgb"):
        assert getattr(old, name) is getattr(new, name), name
    assert old._output_size is common.output_size
    assert old_tc.TorchCodecReader is new_tc.TorchCodecReader
    assert old_tc.torchcodec_available is new_tc.torchcodec_available
    for name in ("write_video", "write_manifest", "write_split_manifests"):
        assert getattr(synth, name) is getattr(writers, name), name
