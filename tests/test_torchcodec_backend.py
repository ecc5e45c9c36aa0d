"""The optional torchcodec backend gives the same frames as the PyAV reference decode.

Skipped when torchcodec is not installed or cannot load FFmpeg shared libraries. Colour
conversion differs between decoders (PyAV: swscale; torchcodec: its own), so pixels are compared
with a tolerance, and frame identity is checked separately: every returned frame must be closest
to the reference frame with the requested index.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torchcodec")

from test_bad_files import make_bad

from data_pipelines.decoding import DecodeError, PyAVReader, decode_all, open_video  # noqa: E402
from data_pipelines.decoding.torchcodec import (  # noqa: E402
    TorchCodecReader,
    torchcodec_available,
)
from data_pipelines.writers import write_video  # noqa: E402

if not torchcodec_available():
    pytest.skip(
        "torchcodec is installed but cannot load FFmpeg shared libraries", allow_module_level=True
    )

NUM_FRAMES, GOP = 40, 8


def _frames(t: int, h: int, w: int) -> np.ndarray:
    """Smooth, moving, per-frame distinct content that survives H.264 at crf 18."""
    rng = np.random.default_rng(0)
    tt = np.arange(t, dtype=np.float32)[:, None, None, None]
    yy = np.arange(h, dtype=np.float32)[None, :, None, None]
    xx = np.arange(w, dtype=np.float32)[None, None, :, None]
    freq = rng.uniform(0.05, 0.2, size=(2, 3)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, size=3).astype(np.float32)
    wave = np.sin(freq[0] * xx + freq[1] * yy + 0.35 * tt + phase)
    img = 128 + 90 * wave
    # a bright square sweeping across makes neighbouring frames clearly different
    out = img.astype(np.uint8)
    for i in range(t):
        x0 = (3 * i) % (w - 8)
        out[i, 4:12, x0 : x0 + 8] = 250
    return out


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tc") / "clip.mp4"
    write_video(path, _frames(NUM_FRAMES, 64, 96), fps=25, gop=GOP)
    return path


@pytest.fixture(scope="module")
def reference(video: Path) -> np.ndarray:
    return decode_all(video)


def _check_identity(out: np.ndarray, ref: np.ndarray, indices: list[int]) -> None:
    assert out.dtype == np.uint8 and out.shape == (len(indices), *ref.shape[1:])
    refs = ref.astype(np.float32)
    for j, i in enumerate(indices):
        err = np.abs(refs - out[j].astype(np.float32)).mean(axis=(1, 2, 3))
        assert int(err.argmin()) == i, f"output {j} looks like frame {err.argmin()}, wanted {i}"
        assert err[i] < 3.0, f"frame {i}: mean abs diff {err[i]:.2f}"


def test_metadata(video: Path, reference: np.ndarray) -> None:
    with TorchCodecReader(video) as r:
        assert r.path == str(video)
        assert r.num_frames == NUM_FRAMES == len(reference)
        assert (r.height, r.width) == (64, 96)
        assert r.fps == pytest.approx(25.0)


@pytest.mark.parametrize(
    "indices",
    [
        [0],
        [NUM_FRAMES - 1],
        list(range(5, 13)),  # crosses the GOP boundary at 8
        list(range(3, 38, 4)),  # step 4, several GOPs
        [7, 8, 9, 16, 24, 31, 32],  # keyframes and their neighbours
        [20, 3, 39, 3, 20, 0],  # unsorted, with repeats
        [12] * 5,
    ],
)
def test_frames_match_pyav(video: Path, reference: np.ndarray, indices: list[int]) -> None:
    with TorchCodecReader(video) as r:
        out = r.get_frames(indices)
    _check_identity(out, reference, indices)


def test_reader_is_reusable_across_requests(video: Path, reference: np.ndarray) -> None:
    with TorchCodecReader(video, threads=0) as r:
        for indices in ([30, 31], [2, 4, 6], [39], [0, 39]):
            _check_identity(r.get_frames(indices), reference, indices)
        assert r.get_frames([]).shape == (0, 64, 96, 3)


def test_open_video_dispatch(video: Path, reference: np.ndarray) -> None:
    with open_video(video, backend="torchcodec") as r:
        assert isinstance(r, TorchCodecReader)
        _check_identity(r.get_frames([1, 17]), reference, [1, 17])


@pytest.mark.parametrize("where", ["decoder", "interpolate"])
def test_short_side_resize(video: Path, where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if where == "interpolate":  # the path taken on GPU and with torchcodec lacking transforms
        monkeypatch.setattr(TorchCodecReader, "_decoder_resize", lambda *a, **k: None)
    with TorchCodecReader(video, short_side=32) as r:
        assert r._interpolate == (where == "interpolate")
        assert (r.height, r.width) == (32, 48)
        out = r.get_frames([0, 10, 10, 33])
    assert out.shape == (4, 32, 48, 3) and out.dtype == np.uint8
    with PyAVReader(video, short_side=32) as p:
        ref = p.get_frames([0, 10, 10, 33])
    assert np.abs(out.astype(np.float32) - ref.astype(np.float32)).mean() < 6.0
    with TorchCodecReader(video, short_side=128) as r:  # never upscales
        assert (r.height, r.width) == (64, 96)


def test_out_of_range_is_too_short(video: Path) -> None:
    with TorchCodecReader(video) as r:
        for bad in ([NUM_FRAMES], [0, NUM_FRAMES + 5], [-1]):
            with pytest.raises(DecodeError) as ei:
                r.get_frames(bad)
            assert ei.value.kind == "too_short"
            assert str(video) in str(ei.value)


@pytest.mark.parametrize(
    "kind,expected",
    [
        ("empty", "empty"),
        ("missing", "missing"),
        ("not_media", "not_media"),
        ("audio_only", "no_video_stream"),
        ("truncated", "truncated"),  # an mp4 cut before its index (moov), written at the end
    ],
)
def test_bad_files_at_open(video: Path, tmp_path: Path, kind: str, expected: str) -> None:
    path = make_bad(kind, tmp_path, video)  # the same bad files the PyAV backend is tested on
    with pytest.raises(DecodeError) as ei:
        TorchCodecReader(path)
    assert ei.value.kind == expected
    assert str(path) in str(ei.value)


@pytest.mark.parametrize(("suffix", "codec"), [(".mkv", "libx264"), (".webm", "libvpx-vp9")])
def test_containers_without_frame_count(tmp_path: Path, suffix: str, codec: str) -> None:
    path = tmp_path / f"clip{suffix}"
    write_video(path, _frames(24, 48, 64), fps=25, gop=GOP, codec=codec)
    reference = decode_all(path)
    indices = [5, 9, 3, 3, 23, 16]
    with TorchCodecReader(path) as r:
        assert r.num_frames == len(reference) == 24
        _check_identity(r.get_frames(indices), reference, indices)
