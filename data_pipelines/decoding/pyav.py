"""PyAV decoding backend: ``PyAVReader`` (frame-exact), ``decode_all`` and ``frame_to_rgb``.

PyAV bundles FFmpeg in its wheel, so this backend needs no system libraries; it is the default
of ``data_pipelines.decoding.open_video``. Frame indices and errors follow
``data_pipelines.decoding.common``. ``PyAVReader.get_frames`` seeks to the keyframe at or before
the first wanted frame and decodes only up to the last one; clips far apart in one file get a
seek each.

How frame indices are found (``PyAVReader``):
  * fast path, constant frame rate: when the container states a frame count (mp4/mov do),
    frame i is expected at ``start + i / fps``. Every decoded frame is checked against that
    grid; a frame off the grid (variable frame rate, dropped frames, edit lists) switches the
    file to the exact path and the request is decoded again.
  * exact path: the packets are demuxed once (no decoding) to list every frame's pts, which
    gives the exact frame count and a pts -> index map. Used for containers without a frame
    count (mkv, webm, avi) and for variable-frame-rate files.

Variable frame rate policy: indices stay positional (the i-th frame), and ``fps`` is the
stream's average rate; a target-fps sampler therefore picks every k-th frame with
k = round(average_fps / target_fps), as decord-based loaders do.

Corrupt bitstreams are caught by FFmpeg's ``err_detect=explode`` (on by default) instead of
being concealed into plausible-looking frames.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from data_pipelines.decoding.common import DecodeError, check_file, output_size

_local = threading.local()
_SKIP_SAFE_CODECS = frozenset({"h264", "hevc", "mpeg4", "mpeg2video", "mpeg1video"})


def frame_to_rgb(frame: av.VideoFrame, height: int | None = None, width: int | None = None) -> np.ndarray:
    """A decoded frame as uint8 RGB ``[H, W, 3]``, optionally area-resized.

    Uses per-thread ``VideoReformatter``s, which keep their swscale context between frames:
    ``frame.to_ndarray(format="rgb24")`` builds a new one per frame and is ~10x slower on small
    frames. Resizing happens after the RGB conversion (resizing YUV would blur chroma twice).
    """
    if getattr(_local, "pid", None) != os.getpid():
        # New per process too: a forked child must not reuse its parent's swscale context,
        # whose worker threads did not survive the fork (using it would deadlock).
        _local.rgb, _local.resize, _local.pid = VideoReformatter(), VideoReformatter(), os.getpid()
    # threads=1: parallelism comes from DataLoader workers; swscale's own thread pool would
    # only add start-up cost per context and threads that do not survive a fork.
    rgb = _local.rgb.reformat(frame, format="rgb24", threads=1)
    if height is not None and width is not None and (height, width) != (frame.height, frame.width):
        rgb = _local.resize.reformat(rgb, width=width, height=height, interpolation="AREA", threads=1)
    return rgb.to_ndarray()


class _OffGrid(Exception):
    """A decoded frame was not where the constant-frame-rate grid put it."""


class PyAVReader:
    """Decode frames of one file with PyAV (FFmpeg inside the wheel; no system libraries).

    Args:
        path: the video file.
        threads: decoder threads (0 lets FFmpeg choose). Frame+slice threading ("AUTO").
        short_side: if set, frames are resized at decode time so that their shorter side is at
            most this many pixels (aspect kept), bounding memory for large sources.
        error_detect: make the decoder raise on bitstream damage instead of concealing it.
        max_gap: wanted frames further apart than this get a fresh seek instead of decoding
            through the gap.
        skip_unneeded: let the decoder drop unwanted frames that no other frame references
            (``skip_frame=NONREF``); kept frames are bit-identical either way.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        threads: int = 1,
        short_side: int | None = None,
        error_detect: bool = True,
        max_gap: int = 48,
        skip_unneeded: bool = True,
    ) -> None:
        self.path = str(path)
        check_file(self.path)
        try:
            self._container = av.open(self.path, metadata_errors="ignore")
        except av.error.FFmpegError as e:
            with open(self.path, "rb") as f:
                head = f.read(12)
            if head[4:8] == b"ftyp":  # an mp4/mov whose index (moov) can't be read
                raise DecodeError(
                    self.path, "truncated", f"mp4/mov without a readable index: cut short? ({e})"
                ) from e
            raise DecodeError(self.path, "not_media", f"FFmpeg cannot open it ({e})") from e
        try:
            if not self._container.streams.video:
                kinds = sorted({s.type for s in self._container.streams}) or ["none"]
                raise DecodeError(self.path, "no_video_stream", f"streams: {', '.join(kinds)}")
            self._stream = s = self._container.streams.video[0]
            cc = s.codec_context
            if cc is None:  # e.g. a damaged header or a codec this FFmpeg build lacks
                raise DecodeError(self.path, "corrupt", "video stream has no decodable codec")
            cc.thread_type = "AUTO"
            cc.thread_count = threads
            if error_detect:
                cc.options = {"err_detect": "explode"}
            # NONREF skipping is exact only where "non-reference" means no later frame reads it;
            # AV1's hidden frames (shown later by reference) and VP9's break that rule.
            self._skip = skip_unneeded and cc.name in _SKIP_SAFE_CODECS
            if not cc.width or not cc.height:
                raise DecodeError(self.path, "corrupt", "video stream has no frame size")
            self.height, self.width = output_size(cc.height, cc.width, short_side)
            self._resize = (self.height, self.width) != (cc.height, cc.width)
            rate = s.average_rate or s.guessed_rate or s.base_rate
            self.fps = float(rate) if rate else 0.0
            self._max_gap = max_gap
            self._pts_index: dict[int, int] | None = None  # exact path: pts -> frame index
            self._pts: np.ndarray | None = None  # exact path: pts of frame i, [N]
            if s.frames > 0 and s.start_time is not None and rate:
                self.num_frames = int(s.frames)
                self._start = int(s.start_time)
                step = 1 / (Fraction(rate) * s.time_base)  # pts ticks per frame, exact
                self._step_num, self._step_den = step.numerator, step.denominator
            else:
                self._scan()
        except BaseException:
            self._container.close()
            raise

    # -- index ---------------------------------------------------------------------------------
    def _scan(self) -> None:
        """Exact path: list every frame's pts by demuxing packets (no decoding)."""
        try:
            self._container.seek(0, stream=self._stream, backward=True)
            pts = [p.pts for p in self._container.demux(self._stream) if p.size and p.pts is not None]
        except av.error.FFmpegError as e:
            raise DecodeError(self.path, "corrupt", f"demuxing failed ({e})") from e
        pts_arr = np.unique(np.asarray(pts, dtype=np.int64))
        if len(pts_arr) == 0:
            raise DecodeError(self.path, "corrupt", "video stream has no timestamped packets")
        self._pts = pts_arr
        self._pts_index = {int(p): i for i, p in enumerate(pts_arr)}
        self.num_frames = len(pts_arr)
        if not self.fps and len(pts_arr) > 1:
            span = float((pts_arr[-1] - pts_arr[0]) * self._stream.time_base)
            self.fps = (len(pts_arr) - 1) / span if span > 0 else 0.0

    def _pts_of(self, index: int) -> int:
        if self._pts is not None:
            return int(self._pts[index])
        # start + round(index * num / den), in integers (Fractions are slow in the hot loop)
        return self._start + (2 * index * self._step_num + self._step_den) // (2 * self._step_den)

    def _index_of(self, pts: int | None) -> int:
        if pts is None:
            if self._pts_index is not None:
                raise DecodeError(self.path, "corrupt", "a frame without a timestamp")
            raise _OffGrid
        if self._pts_index is not None:
            if pts not in self._pts_index:
                raise DecodeError(self.path, "corrupt", f"decoded a frame at pts {pts} with no packet")
            return self._pts_index[pts]
        num, den = self._step_num, self._step_den
        k = (2 * (pts - self._start) * den + num) // (2 * num)  # nearest frame on the grid
        if abs(pts - self._pts_of(k)) * 2 * den >= num:  # off by half a frame or more
            raise _OffGrid
        return k

    # -- decoding ------------------------------------------------------------------------------
    def get_frames(self, indices: Sequence[int], out: np.ndarray | None = None) -> np.ndarray:
        """Decode the frames at ``indices`` (any order, repeats allowed) -> uint8 [N, H, W, 3].

        ``out``, if given, is a uint8 ``[N, H, W, 3]`` array to fill and return (e.g. a slice of
        a batch buffer in shared memory), saving an allocation and a copy per clip.
        """
        idx = [int(i) for i in indices]
        if out is not None and out.shape != (len(idx), self.height, self.width, 3):
            raise ValueError(f"out has shape {out.shape}, expected {(len(idx), self.height, self.width, 3)}")
        if not idx:
            return np.empty((0, self.height, self.width, 3), np.uint8) if out is None else out
        bad = [i for i in idx if not 0 <= i < self.num_frames]
        if bad:
            raise DecodeError(
                self.path, "too_short", f"frame {bad[0]} requested, file has {self.num_frames}"
            )
        try:
            frames = self._decode(sorted(set(idx)))
        except _OffGrid:
            stated = self.num_frames
            self._scan()  # not constant-rate after all: index exactly, decode again
            if max(idx) >= self.num_frames:
                raise DecodeError(
                    self.path,
                    "truncated",
                    f"container states {stated} frames but the stream holds {self.num_frames}; "
                    f"frame {max(idx)} requested",
                ) from None
            frames = self._decode(sorted(set(idx)))
        if out is None:
            return np.stack([frames[i] for i in idx])
        for j, i in enumerate(idx):
            out[j] = frames[i]
        return out

    def _decode(self, wanted: list[int]) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        segment = [wanted[0]]
        for i in wanted[1:]:
            if i - segment[-1] > self._max_gap:
                self._decode_segment(segment, out)
                segment = []
            segment.append(i)
        self._decode_segment(segment, out)
        return out

    def _decode_segment(self, segment: list[int], out: dict[int, np.ndarray]) -> None:
        first, last, todo = segment[0], segment[-1], set(segment)
        back = 0  # how far before `first` we seek; grows if a seek lands past the target
        while True:
            target = max(0, first - back)
            try:
                self._container.seek(self._pts_of(target), stream=self._stream, backward=True)
                landed, overshot = self._decode_packets(first, last, todo, out)
            except av.error.FFmpegError as e:
                raise DecodeError(
                    self.path, "corrupt", f"decoding failed near frame {first}, damaged or cut short ({e})"
                ) from e
            if overshot and target > 0:
                back = max(2 * back, 16)
                continue
            missing = sorted(todo - out.keys())
            if not missing:
                return
            if self._pts is None:
                raise _OffGrid  # the stated frame count may be wrong: recount exactly
            raise DecodeError(
                self.path,
                "truncated",
                f"stream ended before frame {missing[0]} of {self.num_frames}",
            )

    def _decode_packets(
        self, first: int, last: int, todo: set[int], out: dict[int, np.ndarray]
    ) -> tuple[int | None, bool]:
        """Demux and decode from the current position up to frame ``last``.

        Packets of frames that are not wanted are decoded with ``skip_frame=NONREF``: the
        decoder drops them if no other frame references them (B-frames, typically a third to a
        half of an H.264 stream), which cannot change any frame that is kept. Returns the first
        decoded frame's index and whether the seek landed after ``first``.
        """
        cc = self._stream.codec_context
        landed: int | None = None
        seen: set[int] = set()  # frame indices of the packets read (to check the grid)
        for packet in self._container.demux(self._stream):
            if packet.pts is not None:
                k = self._index_of(packet.pts)
                if k in seen and self._pts is None:
                    raise _OffGrid  # two packets on one grid slot: not constant-rate
                seen.add(k)
                if self._skip:
                    cc.skip_frame = "DEFAULT" if k in todo else "NONREF"
            elif self._skip:
                cc.skip_frame = "DEFAULT"  # the flush packet at the end of the stream
            for frame in cc.decode(packet):
                k = self._index_of(frame.pts)
                if landed is None:
                    landed = k
                    if k > first:
                        return landed, True
                if k in todo:
                    out[k] = self._to_array(frame)
                if k >= last:
                    if self._pts is None and not seen.issuperset(range(landed, last + 1)):
                        raise _OffGrid  # a frame is missing from the grid: not constant-rate
                    return landed, False
        return landed, False

    def _to_array(self, frame: av.VideoFrame) -> np.ndarray:
        if self._resize:
            return frame_to_rgb(frame, self.height, self.width)
        return frame_to_rgb(frame)

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> PyAVReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def decode_all(path: str | os.PathLike) -> np.ndarray:
    """Reference: decode every frame sequentially from the start -> uint8 [N, H, W, 3]."""
    with av.open(str(path)) as c:
        frames = sorted(
            ((f.pts if f.pts is not None else i, frame_to_rgb(f))
             for i, f in enumerate(c.decode(video=0))),
            key=lambda t: t[0],
        )
    return np.stack([f for _, f in frames])
