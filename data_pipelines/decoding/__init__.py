"""Frame-exact video decoding: open a file, learn its frame count and rate, decode chosen frames.

common      what both backends share: ``DecodeError``, ``ERROR_KINDS``, ``VIDEO_EXTENSIONS``,
            ``check_file``, ``output_size``, the ``VideoReader`` protocol
pyav        the default backend: ``PyAVReader``, ``decode_all``, ``frame_to_rgb``
torchcodec  the optional backend: ``TorchCodecReader`` (CPU or NVDEC GPU decoding)

``open_video(path, backend=...)`` picks the backend. The backends import only ``common``, never
this package or each other; the torchcodec backend is imported only when asked for.
"""

from __future__ import annotations

import os

from data_pipelines.decoding.common import (
    ERROR_KINDS,
    VIDEO_EXTENSIONS,
    DecodeError,
    VideoReader,
    check_file,
    output_size,
)
from data_pipelines.decoding.pyav import PyAVReader, decode_all, frame_to_rgb

__all__ = [
    "ERROR_KINDS",
    "VIDEO_EXTENSIONS",
    "DecodeError",
    "PyAVReader",
    "VideoReader",
    "check_file",
    "decode_all",
    "frame_to_rgb",
    "open_video",
    "output_size",
]


def open_video(
    path: str | os.PathLike,
    backend: str = "pyav",
    threads: int = 1,
    short_side: int | None = None,
    error_detect: bool = True,
    device: str = "cpu",
) -> VideoReader:
    """Open ``path`` with the chosen backend ("pyav", the default, or "torchcodec")."""
    if backend == "pyav":
        return PyAVReader(path, threads=threads, short_side=short_side, error_detect=error_detect)
    if backend == "torchcodec":
        from data_pipelines.decoding.torchcodec import TorchCodecReader

        return TorchCodecReader(path, short_side=short_side, device=device, threads=threads)
    raise ValueError(f"unknown decoding backend {backend!r}; expected 'pyav' or 'torchcodec'")
