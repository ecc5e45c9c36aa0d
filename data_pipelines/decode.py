"""Old location, kept for compatibility: the decoding code lives in ``data_pipelines.decoding``.

Re-exports the names this module used to define (the same objects); new code imports from
``data_pipelines.decoding``.
"""

from __future__ import annotations

from data_pipelines.decoding import (
    ERROR_KINDS,
    VIDEO_EXTENSIONS,
    DecodeError,
    PyAVReader,
    VideoReader,
    check_file,
    decode_all,
    frame_to_rgb,
    open_video,
)
from data_pipelines.decoding.common import output_size

_output_size = output_size  # private here before the move

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
