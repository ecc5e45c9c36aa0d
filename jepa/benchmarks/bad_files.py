"""Broken video files of every kind the loader must survive, made from a good file.

``write_bad_file(kind, path, good)`` writes one file of ``kind`` at ``path``; ``BAD_KINDS`` maps
each kind to the ``DecodeError`` kind the loader reports for it. Used by ``jepa bench soak`` and
by the bad-file tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np

# kind written -> ERROR_KINDS entry the loader reports (data_pipelines.decoding.common)
BAD_KINDS: dict[str, str] = {
    "empty": "empty",
    "truncated": "truncated",
    "corrupt": "corrupt",
    "not_media": "not_media",
    "audio_only": "no_video_stream",
    "missing": "missing",
    "directory": "unreadable",
}


def write_audio_only(path: Path) -> None:
    """A valid MP4 with one AAC stream and no video."""
    with av.open(str(path), "w") as out:
        s = out.add_stream("aac", rate=16000)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


def _media_span(data: bytes) -> tuple[int, int]:
    """Byte range of the coded frames: the payload of an MP4's top-level ``mdat`` box, else all."""
    pos = 0
    while pos + 8 <= len(data):
        size, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
        header = 8
        if size == 1 and pos + 16 <= len(data):  # 64-bit size
            size, header = int.from_bytes(data[pos + 8 : pos + 16], "big"), 16
        elif size == 0:  # to the end of the file
            size = len(data) - pos
        if size < header:
            break
        if kind == b"mdat":
            return pos + header, min(pos + size, len(data))
        pos += size
    return 0, len(data)


def write_corrupt(good: Path, path: Path, seed: int = 0) -> None:
    """``good`` with 64 random bytes written over its coded frames at a third, a half and two
    thirds of their length (the container and its index stay intact, so the damage is found
    while decoding, whatever the file's size)."""
    data = bytearray(good.read_bytes())
    start, end = _media_span(bytes(data))
    rng = np.random.default_rng(seed)
    for pos in (start + (end - start) // 3, start + (end - start) // 2, start + 2 * (end - start) // 3):
        data[pos : pos + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def write_bad_file(kind: str, path: Path, good: Path, seed: int = 0) -> Path:
    """Write one broken file of ``kind`` (a key of ``BAD_KINDS``) at ``path``; returns ``path``."""
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":  # the index (moov) sits at the end of the file and is cut off
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "corrupt":
        write_corrupt(good, path, seed)
    elif kind == "not_media":
        path.write_text("this is a text file, not a video\n" * 50)
    elif kind == "audio_only":
        write_audio_only(path)
    elif kind == "missing":  # a broken link: listed, but nothing to read
        os.symlink(path.parent / f"does_not_exist_{path.name}", path)
    elif kind == "directory":
        path.mkdir()
    else:
        raise ValueError(f"unknown bad-file kind {kind!r}; one of {', '.join(BAD_KINDS)}")
    return path
