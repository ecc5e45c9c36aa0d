"""What every decoding backend shares: frame-index meaning, errors, the reader protocol.

Frame index ``i`` means the i-th decodable frame of the first video stream in presentation
(pts) order, the same numbering a full sequential decode gives, whatever the backend.

Errors: everything that goes wrong with a file surfaces as ``DecodeError(path, kind, detail)``,
never as a wrong clip; ``kind`` is one of ``ERROR_KINDS``. ``check_file`` catches the problems a
decoder should never be asked about (missing, unreadable, empty files), and ``output_size`` is the
``short_side`` resize rule both backends follow.

This module imports no decoder library; the backends (``pyav``, ``torchcodec``) import it, never
each other.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol

import numpy as np

#: File suffixes treated as videos when a folder is given instead of a manifest.
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".ts")

#: Categories of bad input, in the order of the shared skip table (0 means "no problem").
ERROR_KINDS: tuple[str, ...] = (
    "ok",
    "missing",
    "unreadable",
    "empty",
    "not_media",
    "no_video_stream",
    "corrupt",
    "truncated",
    "too_short",
    "other",
)


class DecodeError(RuntimeError):
    """A file could not give the requested clip. ``kind`` is one of ``ERROR_KINDS``."""

    def __init__(self, path: str | os.PathLike, kind: str = "other", detail: str = "") -> None:
        # kind and detail default so DataLoader can re-raise a worker's error from its text alone
        assert kind in ERROR_KINDS, kind
        self.path, self.kind, self.detail = str(path), kind, detail
        super().__init__(f"{self.path}: {kind}: {detail}" if detail else self.path)


class VideoReader(Protocol):
    """What every decoding backend offers. Frames come back as uint8 ``[N, H, W, 3]`` RGB."""

    path: str
    num_frames: int
    fps: float
    height: int
    width: int

    def get_frames(self, indices: Sequence[int], out: np.ndarray | None = None) -> np.ndarray: ...

    def close(self) -> None: ...


def check_file(path: str | os.PathLike) -> None:
    """Fail early, with a precise reason, on files no decoder should be asked to open."""
    p = str(path)
    if not os.path.lexists(p):
        raise DecodeError(p, "missing", "no such file")
    if not os.path.exists(p):
        raise DecodeError(p, "missing", "broken symbolic link")
    if os.path.isdir(p):
        raise DecodeError(p, "unreadable", "is a directory")
    if not os.access(p, os.R_OK):
        raise DecodeError(p, "unreadable", "permission denied")
    if os.path.getsize(p) == 0:
        raise DecodeError(p, "empty", "file is 0 bytes")


def output_size(h: int, w: int, short_side: int | None) -> tuple[int, int]:
    """Output ``(height, width)`` of an ``h`` x ``w`` source: the shorter side becomes
    ``short_side`` when it is larger (aspect kept, sides at least 1); else unchanged."""
    if short_side is None or min(h, w) <= short_side:
        return h, w
    if h <= w:
        return short_side, max(1, round(w * short_side / h))
    return max(1, round(h * short_side / w)), short_side
