"""Optional decoding backend built on torchcodec: ``TorchCodecReader``.

Chosen with ``open_video(..., backend="torchcodec")``. This module imports without torchcodec
installed; torchcodec itself is imported when a reader is opened.

``TorchCodecReader`` offers the same interface as ``pyav.PyAVReader`` (the ``VideoReader``
protocol): ``path``, ``num_frames``, ``fps``, ``height``, ``width``, ``get_frames(indices)`` ->
uint8 ``[N, H, W, 3]`` RGB numpy array, ``close()``, and use as a context manager.

Frame indices mean the same thing as in ``common.py``: index ``i`` is the i-th frame of the
video stream in presentation (pts) order. The decoder is opened with ``seek_mode="exact"``,
which scans the file's packets once at open time and builds a pts-sorted frame index, so
frame ``i`` is exact also for variable-frame-rate files and containers without a frame count.

Devices: with ``device="cpu"`` FFmpeg decodes on the CPU. With ``device="cuda"`` (or
``"cuda:N"``) the bitstream is decoded on the GPU (NVDEC), resizing also runs on the GPU, and the
frames are then copied back to host memory, because the ``VideoReader`` contract is a numpy
array. GPU decoding inside DataLoader worker processes needs CUDA in the workers: keep
``num_workers=0`` (or use the "spawn" start method) when ``device`` is a GPU.

Resizing (``short_side``): same rule as ``common.output_size`` (the shorter side becomes
``short_side`` if it is larger, aspect kept). On CPU, when the installed torchcodec has decoder
transforms (``torchcodec.transforms.Resize``: bilinear, antialiased), frames are resized inside
the decoder; otherwise the decoded frames are resized with
``torch.nn.functional.interpolate(mode="bilinear", antialias=True)`` in chunks, on the decoding
device. Either way the pixels differ slightly from PyAV's swscale resize.

Differences from the PyAV backend worth knowing:
  * colour conversion (yuv -> rgb) is torchcodec's own; values can differ from PyAV's by a few
    levels per pixel, never the frame order or identity.
  * torchcodec cannot be asked for FFmpeg's ``err_detect=explode``; damaged bitstreams that
    FFmpeg conceals are returned as concealed frames instead of raising ``corrupt``.
  * recent torchcodec versions apply the stream's rotation metadata (``height``/``width`` are
    then the displayed, post-rotation size); PyAV returns the stored orientation.

Requirements: ``pip install 'jepa[torchcodec]'`` and FFmpeg shared libraries (major versions 4
to 7, newer torchcodec releases also accept 8 and 9) on the system, e.g.
``apt-get install ffmpeg`` or ``conda install ffmpeg``; torchcodec does not bundle FFmpeg.
Pick a torchcodec release that matches the installed torch (see torchcodec's compatibility table).

Errors are reported as ``common.DecodeError`` with the same kinds as the PyAV backend.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from data_pipelines.decoding.common import DecodeError, check_file, output_size

_INSTALL_HINT = (
    "the torchcodec decoding backend needs the optional 'torchcodec' package "
    "(pip install 'jepa[torchcodec]', with a torchcodec release that matches your torch) "
    "and FFmpeg shared libraries (libavcodec etc., FFmpeg major version 4-7; recent "
    "torchcodec releases also take 8-9) on the system, "
    "e.g. 'apt-get install ffmpeg' or 'conda install ffmpeg'; or use backend='pyav'"
)

#: Frames decoded at full resolution per step when resizing with ``interpolate``.
_RESIZE_CHUNK = 16


def _load_torchcodec() -> Any:
    """Import ``torchcodec.decoders.VideoDecoder``; ImportError with install hints if unusable."""
    try:
        import torchcodec
        from torchcodec.decoders import VideoDecoder
    except (ImportError, OSError, RuntimeError) as e:
        raise ImportError(f"{_INSTALL_HINT} (import torchcodec failed: {e})") from e
    # Recent releases import without FFmpeg (image decoders still work) and record whether the
    # FFmpeg-linked libraries loaded in ``ffmpeg_major_version`` (None when they did not).
    if hasattr(torchcodec, "ffmpeg_major_version") and torchcodec.ffmpeg_major_version is None:
        raise ImportError(f"{_INSTALL_HINT} (torchcodec found no usable FFmpeg libraries)")
    return VideoDecoder


def torchcodec_available() -> bool:
    """True when torchcodec imports and can load FFmpeg, i.e. the backend can be used."""
    try:
        _load_torchcodec()
    except ImportError:
        return False
    return True


def _open_error_kind(message: str) -> str:
    """Map a torchcodec error raised while opening a file to a ``DecodeError`` kind."""
    m = message.lower()
    if "could not open input" in m or "invalid data found" in m:
        return "not_media"
    if "stream" in m and ("video" in m or "no stream" in m or "best" in m):
        return "no_video_stream"
    return "corrupt"  # opened, but scanning the packets / reading the header failed


def _first_line(e: BaseException) -> str:
    """First line of an error message, without torchcodec's "function, file.cpp:line, " prefix."""
    lines = str(e).strip().splitlines()
    if not lines:
        return type(e).__name__
    m = re.match(r"^\w+, \S+:\d+, (.*)$", lines[0])
    return m.group(1) if m else lines[0]


def _looks_like_mp4(path: str) -> bool:
    """An ISO-BMFF (mp4/mov) file type box at the start, as PyAVReader checks too."""
    try:
        with open(path, "rb") as f:
            return f.read(12)[4:8] == b"ftyp"
    except OSError:
        return False


class TorchCodecReader:
    """Decode frames of one file with torchcodec.

    Args:
        path: the video file.
        short_side: if set, frames are resized at decode time so that their shorter side is at
            most this many pixels (aspect kept), bounding memory for large sources.
        device: "cpu", or a CUDA device ("cuda", "cuda:0") to decode on the GPU; frames are
            still returned as a host numpy array.
        threads: FFmpeg decoder threads for CPU decoding (0 lets FFmpeg choose).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        short_side: int | None = None,
        device: str = "cpu",
        threads: int = 1,
    ) -> None:
        self.path = str(path)
        video_decoder = _load_torchcodec()
        check_file(self.path)
        self._device = torch.device(device)
        params = inspect.signature(video_decoder).parameters
        kwargs: dict[str, Any] = {
            "device": str(self._device),
            "seek_mode": "exact",
            "dimension_order": "NHWC",
        }
        if "num_ffmpeg_threads" in params:
            kwargs["num_ffmpeg_threads"] = threads
        if short_side is not None:
            resize = self._decoder_resize(video_decoder, params, kwargs, short_side)
            if resize is not None:
                kwargs["transforms"] = [resize]
        self._decoder = self._open(video_decoder, kwargs)
        md = self._decoder.metadata
        src_h, src_w = md.height, md.width
        if not src_h or not src_w:
            raise DecodeError(self.path, "corrupt", "video stream has no frame size")
        self.num_frames = int(len(self._decoder))
        if self.num_frames <= 0:
            raise DecodeError(self.path, "corrupt", "video stream has no decodable frames")
        fps = getattr(md, "average_fps_from_header", None) or md.average_fps
        self.fps = float(fps) if fps else 0.0
        self.height, self.width = output_size(src_h, src_w, short_side)
        # Resize after decoding when the decoder could not do it (GPU, older torchcodec).
        resized = (self.height, self.width) != (src_h, src_w)
        self._interpolate = resized and "transforms" not in kwargs

    def _decoder_resize(
        self, video_decoder: Any, params: Any, kwargs: dict[str, Any], short_side: int
    ) -> Any:
        """A ``torchcodec.transforms.Resize`` to the output size, or None (resize afterwards).

        Only on CPU and only with torchcodec versions that have decoder transforms. The frame
        size comes from a cheap header-only open (``seek_mode="approximate"``, no scan); if that
        fails, the exact open that follows reports the problem.
        """
        if self._device.type != "cpu" or "transforms" not in params:
            return None
        try:
            import torchcodec.transforms as tc_transforms
        except ImportError:
            return None
        resize_cls = getattr(tc_transforms, "Resize", None)
        if resize_cls is None:
            return None
        try:
            md = video_decoder(self.path, **{**kwargs, "seek_mode": "approximate"}).metadata
        except Exception:
            return None
        if not md.height or not md.width:
            return None
        size = output_size(md.height, md.width, short_side)
        if size == (md.height, md.width):
            return None
        return resize_cls(size)

    def _open(self, video_decoder: Any, kwargs: dict[str, Any]) -> Any:
        try:
            return video_decoder(self.path, **kwargs)
        except (RuntimeError, ValueError, OSError) as e:
            msg = str(e)
            if "Could not load libtorchcodec" in msg:
                raise ImportError(f"{_INSTALL_HINT} (torchcodec could not load FFmpeg)") from e
            kind = _open_error_kind(msg)
            if kind == "not_media" and _looks_like_mp4(self.path):
                kind = "truncated"  # an mp4/mov whose index (moov) can't be read: cut short?
            detail = _first_line(e)
            raise DecodeError(self.path, kind, f"torchcodec cannot open it ({detail})") from e

    # -- decoding ------------------------------------------------------------------------------
    def get_frames(self, indices: Sequence[int], out: np.ndarray | None = None) -> np.ndarray:
        """Decode the frames at ``indices`` (any order, repeats allowed) -> uint8 [N, H, W, 3],
        written into ``out`` when given."""
        if self._decoder is None:
            raise ValueError(f"{self.path}: reader is closed")
        idx = [int(i) for i in indices]
        if not idx:
            return np.empty((0, self.height, self.width, 3), np.uint8)
        bad = [i for i in idx if not 0 <= i < self.num_frames]
        if bad:
            raise DecodeError(
                self.path, "too_short", f"frame {bad[0]} requested, file has {self.num_frames}"
            )
        wanted = sorted(set(idx))
        if self._interpolate:
            parts = [
                self._resized(self._decode(wanted[k : k + _RESIZE_CHUNK]))
                for k in range(0, len(wanted), _RESIZE_CHUNK)
            ]
            frames = torch.cat(parts) if len(parts) > 1 else parts[0]
        else:
            frames = self._decode(wanted)
        if tuple(frames.shape[1:]) != (self.height, self.width, 3):
            raise DecodeError(
                self.path,
                "corrupt",
                f"decoded frames are {tuple(frames.shape[1:])}, expected "
                f"{(self.height, self.width, 3)} (frame size changes mid-stream?)",
            )
        pos = {k: j for j, k in enumerate(wanted)}
        gather = torch.tensor([pos[i] for i in idx], dtype=torch.long, device=frames.device)
        result = frames.index_select(0, gather).cpu().numpy()
        if out is not None:
            out[...] = result
            return out
        return np.ascontiguousarray(result, dtype=np.uint8)

    def _decode(self, wanted: list[int]) -> torch.Tensor:
        """Decode sorted unique indices -> uint8 [N, h, w, 3] tensor on the decoding device."""
        try:
            return self._decoder.get_frames_at(wanted).data
        except IndexError as e:  # indices are checked above; the stream held fewer frames
            raise DecodeError(self.path, "truncated", f"near frame {wanted[0]}: {e}") from e
        except (RuntimeError, ValueError) as e:
            msg = _first_line(e)
            kind = "truncated" if "no more frames" in msg.lower() else "corrupt"
            raise DecodeError(
                self.path, kind, f"decoding failed near frame {wanted[0]} ({msg})"
            ) from e

    def _resized(self, frames: torch.Tensor) -> torch.Tensor:
        """Bilinear, antialiased resize of uint8 [N, h, w, 3] to [N, height, width, 3]."""
        x = frames.permute(0, 3, 1, 2).float()
        x = F.interpolate(
            x, size=(self.height, self.width), mode="bilinear", antialias=True, align_corners=False
        )
        return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)

    def close(self) -> None:
        # torchcodec frees the FFmpeg context when the decoder object is collected.
        self._decoder = None

    def __enter__(self) -> TorchCodecReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
